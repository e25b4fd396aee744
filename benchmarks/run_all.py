"""Every speed and memory figure in one table: `make bench` (or `make bench QUICK=1`).

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--out benchmarks/results.json]

Runs each benchmark of this folder in its own process (so one's memory and threads do not colour
the next), reads the JSON it prints or writes, and prints one row per figure: the value, its
baseline measured in the same run, the ratio and the target. The machine's fp32 matmul rate is
measured first (benchmarks/hardware.py): SFT's achieved FLOP/s are given as a fraction of it.
Figures that need an up-to-date pipeline checkout (no-op `dvc repro`, Prefect flow overhead, the
eval settings on the trained model) are skipped, with the reason, when `dvc status` says the
checkout is stale; run `make run` first. The full run starts with the whole default pipeline from
scratch in a copy (per-stage wall time and peak RSS, 15-25 minutes on 2 cores); `--quick` runs
that on the test suite's tiny params and shrinks every benchmark, a few minutes in all. Nothing here asserts: figures on a
shared machine move with its load, so each row carries the 1-minute load average of its run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Bench:
    name: str
    script: str
    args: list[str]
    quick_args: list[str]
    rows: Callable[[dict[str, Any]], list[tuple[str, Any, Any, Any, str]]]  # (figure, value, baseline, ratio, target)
    writes_out: bool = False  # takes --out FILE (else: the last JSON object it prints)
    needs_pipeline: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _grpo(r):
    return [("GRPO step, weighted vs plain TRL (wall)", r["weighted_step_s"]["wall"], r["plain_step_s"]["wall"],
             r["ratio_wall"], "<= 1.05x"),
            ("GRPO tokens/s (prompt + completion, generation included)", r["tokens_per_second"]["weighted"], None,
             None, ""),
            ("GRPO achieved GFLOP/s vs fp32 matmul peak", r["achieved_gflops"]["weighted"], r["matmul_gflops"],
             r["fraction_of_matmul_peak"], "")]


def _eval(r):
    return [("eval samples/s, batched vs one at a time", r["batched_samples_per_second"],
             r["single_samples_per_second"], r["speedup"], ">= 5x")]


def _sft(r):
    return [("SFT samples/s (steady)", r["steady_samples_per_second"], None, None, ""),
            ("SFT tokens/s", r["tokens_per_second"], None, None, ""),
            ("SFT achieved GFLOP/s vs fp32 matmul peak", r["achieved_gflops"], r["matmul_gflops"],
             r["fraction_of_matmul_peak"], ">= 0.5")]


def _validate(r):
    return [("CoT validation rows/s", r["rows_per_second"], None, None, "")]


def _memory(r):
    lazy = {row["records"]: row["growth_mib"] for row in r["runs"] if row["mode"] == "lazy"}
    eager = {row["records"]: row["growth_mib"] for row in r["runs"] if row["mode"] == "eager"}
    small, large = min(lazy), max(lazy)
    rows = [(f"dataset build RSS growth, {large} vs {small} records (MiB)", lazy[large], lazy[small],
             _ratio(lazy[large], lazy[small]), "flat (x1)")]
    for size, mib in eager.items():
        rows.append((f"dataset build RSS at {size} records, eager vs lazy (MiB)", mib, lazy[size],
                     _ratio(mib, lazy[size]), ""))
    return rows


def _serve(r):
    rows = []
    for batched, single in zip(r["batched"], r["unbatched"], strict=True):
        rows.append((f"serve req/s at {batched['clients']} clients, batched vs unbatched", batched["requests_per_s"],
                     single["requests_per_s"], _ratio(batched["requests_per_s"], single["requests_per_s"]), ""))
        rows.append((f"serve p95 s at {batched['clients']} clients, batched vs unbatched", batched["p95_s"],
                     single["p95_s"], _ratio(batched["p95_s"], single["p95_s"]), ""))
    return rows


def _noop(r):
    return [("no-op dvc repro (s, median)", r["median_s"], r.get("target_s", 3.0),
             _ratio(r["median_s"], r.get("target_s", 3.0)), "<= 3 s")]


def _layout(r):
    return [(f"no-op dvc repro, file deps vs image-folder deps ({r['files']} images, s)", r["file_deps_median_s"],
             r["folder_deps_median_s"], r["ratio"], "")]


def _stages(r):
    rows = []
    for s in r["stages"]:
        rows += [(f"pipeline stage {s['stage']}: wall s", s["wall_s"], None, None, ""),
                 (f"pipeline stage {s['stage']}: peak RSS MiB", s["peak_rss_mib"], None, None, "")]
    return rows + [(f"{r['params']} pipeline from scratch, all stages (wall s)", r["total_wall_s"], None, None, "")]


def _eval_speed(r):
    return [(f"eval setting '{name}' vs the baseline (samples/s)", v["samples_per_second"],
             r["variants"]["baseline"]["samples_per_second"], v["speed_vs_baseline"], "")
            for name, v in r["variants"].items() if name != "baseline"]


def _flow(r):
    return [("Prefect flow overhead (s, per run) vs a default run (s)", r["overhead_s"], r.get("default_run_s"),
             r.get("overhead_share"), "<= 0.05")]


BENCHES = [
    Bench("pipeline_stages", "pipeline_stages.py", [], ["--tiny"], _stages, writes_out=True),
    Bench("grpo_weighting", "grpo_weighting.py", [], ["--steps", "4", "--reps", "2"], _grpo),
    Bench("eval_batching", "eval_batching.py", [], ["--per-task", "4", "--repeats", "1"], _eval, writes_out=True,
          env={"OMP_NUM_THREADS": "1"}),
    Bench("eval_speed", "eval_speed.py", [], ["--per-task", "4", "--repeats", "1", "--batch-sizes", "64"], _eval_speed,
          writes_out=True, needs_pipeline=True),
    Bench("sft_throughput", "sft_throughput.py", [], ["--steps", "11", "--per-task", "20"], _sft),
    Bench("validate_throughput", "validate_throughput.py", [], ["--rows", "10000"], _validate),
    Bench("dataset_memory", "dataset_memory.py", [], ["--sizes", "500", "5000", "--eager-max", "500"], _memory,
          writes_out=True),
    Bench("serve_load", "serve_load.py", [], ["--quick"], _serve, writes_out=True),
    Bench("dvc_noop_layout", "dvc_noop_layout.py", [], ["--repeats", "3"], _layout, writes_out=True),
    Bench("dvc_noop", "dvc_noop.py", [], ["--repeats", "3"], _noop, writes_out=True, needs_pipeline=True),
    Bench("flow_overhead", "flow_overhead.py", [], ["--repeats", "1"], _flow, writes_out=True, needs_pipeline=True),
]


def pipeline_is_current() -> str | None:
    """None when `dvc status` finds nothing stale here, else why not."""
    done = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "dvc.yaml"], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        return "dvc status failed: " + " ".join((done.stderr or done.stdout).split())[-160:]
    stale = json.loads(done.stdout or "{}")
    return f"pipeline not up to date ({', '.join(sorted(stale))}); run `make run` first" if stale else None


def last_json(text: str) -> dict[str, Any]:
    """The last top-level JSON object a script printed."""
    end = text.rstrip().rfind("}")
    depth = 0
    for index in range(end, -1, -1):
        depth += {"}": 1, "{": -1}.get(text[index], 0)
        if depth == 0:
            return json.loads(text[index:end + 1])
    raise ValueError("no JSON object in the output")


def run(bench: Bench, quick: bool, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{bench.name}.json"
    command = [sys.executable, str(HERE / bench.script), *(bench.quick_args if quick else bench.args)]
    if bench.writes_out:
        command += ["--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, **bench.env})
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        return {"name": bench.name, "error": (done.stderr or done.stdout).strip()[-600:], "seconds": seconds}
    result = json.loads(out.read_text()) if bench.writes_out else last_json(done.stdout)
    return {"name": bench.name, "seconds": seconds, "load_average_1min": round(os.getloadavg()[0], 2),
            "result": result, "rows": [list(row) for row in bench.rows(result)]}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| figure | value | baseline | ratio | target | load |", "|---|---|---|---|---|---|"]
    for entry in results:
        if "rows" not in entry:
            lines.append(f"| {entry['name']} | {entry.get('skipped') or 'error: ' + entry.get('error', '')[:120]} "
                         "| | | | |")
            continue
        for figure, value, baseline, ratio, target in entry["rows"]:
            lines.append(f"| {figure} | {value} | {'' if baseline is None else baseline} | "
                         f"{'' if ratio is None else ratio} | {target} | {entry['load_average_1min']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes in all")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks: " + ", ".join(b.name for b in BENCHES))
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from hardware import matmul_peak

    results: list[dict[str, Any]] = []
    stale = pipeline_is_current()
    with tempfile.TemporaryDirectory(prefix="univg-bench-") as scratch:
        for bench in BENCHES:
            if args.only and bench.name not in args.only:
                continue
            if bench.needs_pipeline and stale:
                results.append({"name": bench.name, "skipped": stale})
                continue
            print(f"running {bench.name} ...", flush=True)
            results.append(run(bench, args.quick, Path(scratch)))
    report = {"machine": {**matmul_peak(), "cpus": os.cpu_count()}, "quick": args.quick, "benchmarks": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfp32 matmul peak: {report['machine']['matmul_gflops']} GFLOP/s on {report['machine']['threads']} threads\n")
    print(table(results))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
