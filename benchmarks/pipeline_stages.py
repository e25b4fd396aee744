"""Wall time and peak memory of each stage of the default pipeline, from scratch, as `make run` runs it.

Copies the project (tracked and untracked-but-not-ignored files, as a fresh clone has them, and
an empty DVC cache) into a temporary folder, then runs `dvc repro --single-item <stage>` for each
stage, upstream first. Each stage's peak RSS is the largest resident set of the `dvc` process
and the stage command it runs (the kernel's accounting for a waited-for process tree, wait4).

    python benchmarks/pipeline_stages.py                 # the default pipeline (13-25 min on 2 cores)
    python benchmarks/pipeline_stages.py --tiny          # the test suite's tiny params (about a minute)
    python benchmarks/pipeline_stages.py --keep /tmp/run # keep the copy: an up-to-date pipeline to time
                                                         # no-op repro and flow overhead on (--repo /tmp/run)
    python benchmarks/pipeline_stages.py --here          # `make run` in this checkout, one stage at a time
                                                         # (stages already up to date are skipped: seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.steps import dvc_stage_names, tool_env  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny params (tests/pipeline/tiny_params.py)")
    parser.add_argument("--keep", type=Path, default=None, help="build the copy here and keep it")
    parser.add_argument("--here", action="store_true", help="run in this checkout instead of a copy (not with --tiny)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    return parser.parse_args(argv)


def copy_project(dest: Path) -> None:
    """What a fresh clone would hold: tracked files plus untracked ones git does not ignore, then one commit."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    identity = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark copy"]):
        subprocess.run(["git", *command], cwd=dest, check=True, capture_output=True, env={**os.environ, **identity})


def use_tiny_params(repo: Path) -> None:
    from tests.pipeline.tiny_params import TINY_OVERRIDES
    from univg.config import dump_params, load_params

    (repo / "params.yaml").write_text(dump_params(load_params(repo / "params.yaml", TINY_OVERRIDES)))


def run_stage(repo: Path, stage: str, env: dict[str, str], log) -> dict:
    """Run one stage; its wall seconds, CPU seconds and peak RSS (the dvc process tree)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=repo, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}); see {log.name}")
    return {"stage": stage, "wall_s": round(seconds, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}  # Linux reports KiB


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.here and (args.tiny or args.keep):
        sys.exit("error: --here runs this checkout as it is: it takes neither --tiny nor --keep")
    with tempfile.TemporaryDirectory(prefix="univg-pipeline-bench-") as scratch:
        repo = REPO if args.here else args.keep or Path(scratch) / "repo"
        if not args.here:
            repo.mkdir(parents=True, exist_ok=True)
            copy_project(repo)
        if args.tiny:
            use_tiny_params(repo)
        env = tool_env()
        env.pop("MLFLOW_TRACKING_URI", None)  # the copy's own sqlite store
        stages = []
        log_file = Path(tempfile.gettempdir()) / "univg-pipeline-stages.log" if args.here else repo / "pipeline_stages.log"
        with open(log_file, "w") as log:
            for stage in dvc_stage_names(repo):
                print(f"stage {stage} ...", file=sys.stderr, flush=True)
                stages.append(run_stage(repo, stage, env, log))
                print(f"  {stages[-1]}", file=sys.stderr, flush=True)
    total = round(sum(s["wall_s"] for s in stages), 1)
    result = {"params": "tiny" if args.tiny else "default", "where": "this checkout" if args.here else "a fresh copy",
              "stages": stages, "total_wall_s": total,
              "peak_rss_mib": max(s["peak_rss_mib"] for s in stages), "cpus": os.cpu_count(),
              "load_average_1min": round(os.getloadavg()[0], 2), "kept_at": str(args.keep) if args.keep else None}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
