"""Fan-out on Ray: evaluation and CoT generation split into shards that run as Prefect tasks on a
Ray cluster (prefect-ray's RayTaskRunner), merged into exactly what one process writes.

    python flows/fanout.py eval --model M --benchmark mig-bench --annotations F --out DIR
    python flows/fanout.py cot --input F --out F
    (-S fanout.shards=8 -S fanout.ray_address=ray://head:10001 -S fanout.gpus_per_shard=1)

`fanout.ray_address` names an existing cluster; empty starts a local Ray on this machine. Shards
read the data and the model from the same paths on every node: a shared filesystem (or the same
`dvc pull` on each node), and an MLflow URI or a folder every node sees for the model.

- eval: shard k generates every n-th batch of the one-process batch order (univg.eval.run.
  generate_shard), so the merged predictions are the one-process predictions; the flow scores them
  and writes predictions.jsonl, metrics.json and per_sample.jsonl under --out.
- cot: shard k teaches a contiguous slice of the rows (univg.cot.generate.teach; each chain depends
  on its row only), and the flow writes the chains and their failures file in input order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from prefect import flow, task
from prefect_ray import RayTaskRunner
from prefect_ray.context import remote_options

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `flows` and `univg` importable on every worker
    sys.path.insert(0, str(ROOT))

from univg.cli import params_from  # noqa: E402
from univg.config import FanoutConfig, Params  # noqa: E402

cli = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def task_runner(cfg: FanoutConfig, local_cpus: int | None = None) -> RayTaskRunner:
    """The Ray task runner of `cfg`: its cluster, or a local Ray (with `local_cpus` CPUs when given)."""
    if cfg.ray_address:
        return RayTaskRunner(address=cfg.ray_address)
    init = {"include_dashboard": False, "num_cpus": local_cpus} if local_cpus else {"include_dashboard": False}
    return RayTaskRunner(init_kwargs={**init, "runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}}})


def slices(count: int, shards: int) -> list[range]:
    """`count` items in at most `shards` contiguous, nearly equal slices (none empty)."""
    shards = max(1, min(shards, count))
    edges = [round(k * count / shards) for k in range(shards + 1)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


# ----------------------------------------------------------------------------- evaluation
def _benchmark(benchmark: str, annotations: str, image_root: str | None, params: Params):
    """The benchmark as `univg eval` reads it: the same image policy and row limit on every shard."""
    from univg.data.benchmarks import load_benchmark
    from univg.data.images import stage_policy

    policy = stage_policy(annotations, image_root, params.data)
    loaded = load_benchmark(benchmark, annotations, image_root, policy)
    return loaded.head(params.eval.limit) if params.eval.limit else loaded


@task(name="eval-shard")
def eval_shard(model: str, benchmark: str, annotations: str, image_root: str | None, answer_format: str,
               shard: int, shards: int, params: Params) -> dict[str, Any]:
    from univg.eval.run import generate_shard

    cfg = params.eval
    loaded = _benchmark(benchmark, annotations, image_root, params)
    result = generate_shard(model, loaded, answer_format, cfg.batch_size, cfg.max_new_tokens, (shard, shards),
                            cfg.device, params.model.family)
    return {"rows": result.rows, "family": result.family, "limits": result.limits}


@flow(name="univg-fanout-eval")
def fanout_eval(model: str, benchmark: str, annotations: str, out: str, params: Params,
                image_root: str | None = None) -> dict[str, Any]:
    from univg.eval.scoring import resolve_answer_format, score_records
    from univg.models.loading import trained_answer_format
    from univg.schema import write_jsonl

    cfg, fan = params.eval, params.fanout
    # shards may run on other machines: every path absolute (the same on each node: a shared filesystem)
    annotations = str(Path(annotations).resolve())
    image_root = str(Path(image_root).resolve()) if image_root else None
    model = str(Path(model).resolve()) if Path(model).exists() else model
    loaded = _benchmark(benchmark, annotations, image_root, params)
    asked = trained_answer_format(model) if cfg.answer_format == "auto" else cfg.answer_format
    chosen = resolve_answer_format(loaded, asked)  # the model's own format, else the benchmark's
    with remote_options(num_cpus=fan.cpus_per_shard, num_gpus=fan.gpus_per_shard):
        futures = [eval_shard.submit(model, benchmark, annotations, image_root, chosen, k, fan.shards, params)
                   for k in range(fan.shards)]
    parts = [future.result() for future in futures]
    rows = sorted((row for part in parts for row in part["rows"]), key=lambda r: r["index"])
    if [r["index"] for r in rows] != sorted({r["index"] for r in rows}):
        raise RuntimeError("eval shards overlap: a record was generated by two shards")
    family, limits = parts[0]["family"], parts[0]["limits"]
    metrics, scores = score_records(loaded, {r["index"]: r for r in rows}, chosen, family.coords, cfg.n_bootstrap,
                                    cfg.seed, min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)
    metrics.update(model=model, family=family.name, shards=fan.shards)
    out_dir = Path(out)
    write_jsonl(out_dir / "predictions.jsonl", rows)
    write_jsonl(out_dir / "per_sample.jsonl", (s.to_row() for s in scores))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


# ----------------------------------------------------------------------------- CoT generation
@task(name="cot-shard")
def cot_shard(numbered: list[tuple[int, dict]], cot: Any, base_dir: str) -> dict[str, Any]:
    from univg.cot.generate import summarise, teach

    teacher, outcomes, written, failed = teach(numbered, cot, Path(base_dir))
    return {"written": written, "failed": failed,
            "summary": summarise(teacher, outcomes, len(numbered), len(written), len(failed))}


@flow(name="univg-fanout-cot")
def fanout_cot(input_path: str, out: str, params: Params, image_root: str | None = None) -> dict[str, Any]:
    from univg.cot.generate import read_input, write_outputs

    base_dir = (Path(image_root) if image_root else Path(input_path).parent).resolve()
    numbered, unreadable = read_input(Path(input_path), None)
    fan = params.fanout
    with remote_options(num_cpus=fan.cpus_per_shard, num_gpus=fan.gpus_per_shard):
        futures = [cot_shard.submit([numbered[i] for i in part], params.cot, str(base_dir))
                   for part in slices(len(numbered), fan.shards)]
    parts = [future.result() for future in futures]
    written = [pair for part in parts for pair in part["written"]]
    failed = unreadable + [pair for part in parts for pair in part["failed"]]
    write_outputs(Path(out), base_dir, written, failed)
    totals = {key: sum(p["summary"][key] for p in parts) for key in ("candidates", "tokens", "requests", "generic_chains")}
    return {"rows": len(numbered) + len(unreadable), "written": len(written), "failures": len(failed),
            "shards": len(parts), **totals}


# ----------------------------------------------------------------------------- command line
ParamsOpt = Annotated[Path, typer.Option("--params", help="Params file (fanout.*, eval.*, cot.*).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-S", help="Override a param: key=value (repeatable).")]


@cli.command("eval")
def eval_command(
    model: Annotated[str, typer.Option(help="Model folder or models:/ URI every node can read.")],
    benchmark: Annotated[str, typer.Option(help="Benchmark loader name.")],
    annotations: Annotated[Path, typer.Option(help="The benchmark's annotation file.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions.jsonl, per_sample.jsonl, metrics.json.")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Evaluate one model with its batches spread over Ray shards."""
    cfg = params_from(params, set_)
    run = fanout_eval.with_options(task_runner=task_runner(cfg.fanout))
    metrics = run(model, benchmark, str(annotations), str(out), cfg, str(image_root) if image_root else None)
    typer.echo(json.dumps({k: metrics[k] for k in ("acc@0.5", "miou", "n", "shards")}, indent=2))


@cli.command("cot")
def cot_command(
    input: Annotated[Path, typer.Option("--input", help="Grounding records (JSONL).")],
    out: Annotated[Path, typer.Option(help="Where the records with chains go (failures beside it).")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Generate chains of thought with the rows spread over Ray shards."""
    cfg = params_from(params, set_)
    run = fanout_cot.with_options(task_runner=task_runner(cfg.fanout))
    typer.echo(json.dumps(run(str(input), str(out), cfg, str(image_root) if image_root else None), indent=2))


if __name__ == "__main__":
    cli()
