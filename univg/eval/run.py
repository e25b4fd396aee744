"""Evaluation entry points: `univg eval` (one model) and the DVC `eval` stage (base, SFT, GRPO).

evaluate_model writes, under out_dir:
  predictions.jsonl   {"index", "response"[, "error"]} per row of the annotation file (contract)
  metrics.json        the scoring contract's shape + ci95, parsed, errors, index_acc, ...
  per_sample.jsonl    one scored row per record (IoU, parsed box, status)
  report/index.html   the visual report (+ per_task.png, iou_hist.png, samples/*.png)
and logs params, metrics, the evaluation data set and these files to MLflow.

run_eval_stage writes metrics/eval.json (one top-level entry per evaluated model and nothing
else), metrics/compare.json (paired bootstrap of Acc@0.5: "sft-base", "grpo-sft") and the dvc
plots table (model, task, acc@0.5).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from univg.data.benchmarks import LoadedBenchmark, load_benchmark
from univg.data.images import stage_policy
from univg.eval.inference import generate_predictions, model_generate
from univg.eval.report import write_report
from univg.eval.scoring import THRESHOLDS, resolve_answer_format, score_records
from univg.eval.stats import paired_bootstrap
from univg.models.family import ModelFamily, PixelLimits
from univg.schema import read_jsonl_lines, write_jsonl
from univg.tracking import stage_run

log = logging.getLogger(__name__)
COMPARISONS = (("sft", "base"), ("grpo", "sft"))  # "a-b": positive when a is better


# ----------------------------------------------------------------------------- tracking
@contextlib.contextmanager
def tracking_run(enabled: bool, params: Any, run_name: str, log_params: dict[str, Any]) -> Iterator[Any]:
    """The eval stage's MLflow run; nested when a run (the stage's, or a flow's) is active."""
    if not enabled:
        yield None
        return
    import mlflow

    if mlflow.active_run() is None:
        with stage_run("eval", params, run_name=run_name, log_params=log_params) as run:
            yield run
        return
    from univg.tracking import flatten

    with mlflow.start_run(run_name=run_name, nested=True, tags={"univg.stage": "eval"}) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(log_params).items()})
        yield run


def metric_name(name: str) -> str:
    """MLflow metric names allow only [\\w.\\- /:]; '@' becomes '_'."""
    return re.sub(r"[^\w.\- /]", "_", name)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {metric_name(k): float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    for key, (lo, hi) in (metrics.get("ci95") or {}).items():
        flat[metric_name(f"{key}_ci_lo")], flat[metric_name(f"{key}_ci_hi")] = lo, hi
    for task, block in metrics.get("per_task", {}).items():
        flat.update({metric_name(f"{task}/{k}"): float(v) for k, v in block.items()})
    return flat


def log_evaluation(out_dir: Path, metrics: dict[str, Any], benchmark: LoadedBenchmark) -> None:
    import mlflow
    import pandas as pd

    mlflow.log_metrics(flat_metrics(metrics))
    table = pd.DataFrame([{"index": s.index, "id": s.record["id"], "task": s.record["task"],
                           "target_image": s.record["target_image"], "question": s.record["question"]}
                          for s in benchmark.samples])
    with warnings.catch_warnings():  # MLflow's source-resolution and integer-schema hints: noise here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(table, source=str(benchmark.path.resolve()), name=benchmark.name)
        mlflow.log_input(dataset, context="eval")
    for name in ("predictions.jsonl", "metrics.json", "per_sample.jsonl"):
        mlflow.log_artifact(str(out_dir / name))
    mlflow.log_artifacts(str(out_dir / "report"), artifact_path="report")


# ----------------------------------------------------------------------------- one shard
@dataclass
class Shard:
    rows: list[dict[str, Any]]  # prediction rows of this shard's records
    family: ModelFamily  # how the model writes boxes
    limits: PixelLimits  # its processor's resize rule
    device: str


def generate_shard(model_ref: str, loaded: LoadedBenchmark, answer_format: str, batch_size: int, max_new_tokens: int,
                   shard: tuple[int, int] = (0, 1), device: str = "auto", family: str = "auto") -> Shard:
    """Load the model on `device` and generate shard (rank, world) of the benchmark: every world-th
    batch of the one-process batch order, so the shards' rows together are the one-process rows.
    Used by each process of a launched evaluation and by each task of a Ray fan-out (flows/fanout.py)."""
    from univg.models.family import family_of, limits_of
    from univg.models.loading import load_model_and_processor

    model, processor = load_model_and_processor(model_ref, padding_side="left", device=device)
    model_family = family_of(model, family)
    limits = limits_of(processor, model_family)
    rows = generate_predictions(model_generate(model, processor, max_new_tokens), loaded, answer_format, batch_size,
                                family=model_family, limits=limits, shard=shard)
    return Shard(rows, model_family, limits, str(model.device))


# ----------------------------------------------------------------------------- processes
def process_shard() -> tuple[int, int]:
    """(rank, world) under `accelerate launch` or torchrun; (0, 1) in a plain process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch
    from accelerate import PartialState

    # Joins the launch's process group: NCCL on GPUs, gloo on CPU (where accelerate needs telling).
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's prediction rows, on every process, sorted by index (each index once)."""
    from accelerate.utils import gather_object

    merged = sorted(gather_object(rows), key=lambda r: r["index"])
    indexes = [r["index"] for r in merged]
    if len(set(indexes)) != len(indexes):
        raise RuntimeError("eval shards overlap: a record was generated by two processes")
    return merged


# ----------------------------------------------------------------------------- one model
def evaluate_model(
    model_ref: str,
    benchmark: str,
    annotations: Path,
    out_dir: Path,
    image_root: Path | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 128,
    answer_format: str | None = None,
    limit: int | None = None,
    report_samples: int = 24,
    n_bootstrap: int = 1000,
    log_to_mlflow: bool = True,
    params: Any = None,
    seed: int = 0,
    run_name: str | None = None,
    coords: str | None = None,
    device: str = "auto",
    family: str = "auto",
    path_map: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """`univg eval`: generate, score, report and log one model on one benchmark; returns metrics.

    `answer_format` None: the format the model was trained on (its univg_train.json), else the
    benchmark's default (mig-synth indexed, others univg-r1); it picks the prompt's instruction and
    whether the image index is scored. `limit`: only the first N rows of the file (then `n` = N).
    `coords` None: the model family's box convention (univg.models.family; `family` 'auto' reads
    it from the checkpoint), else a scoring name (see scoring). `device`: see choose_placement.
    `path_map` {old prefix: new prefix} rewrites the annotation file's image paths.
    Under `accelerate launch` / torchrun each process generates a slice of the batches and rank 0
    gathers, scores, reports and logs; the other ranks return None.
    """
    from univg.models.loading import trained_answer_format

    rank, world = process_shard()
    out_dir = Path(out_dir)
    # --- benchmark
    # A pipeline's own split may point back at imported images; a file named on the command line
    # keeps to its own folder (or the image root).
    policy = stage_policy(annotations, image_root, params.data) if params is not None else None
    loaded = load_benchmark(benchmark, annotations, image_root, policy, path_map=path_map)
    if limit:
        loaded = loaded.head(limit)
    chosen = resolve_answer_format(loaded, answer_format or trained_answer_format(model_ref))
    settings = {"model": str(model_ref), "benchmark": benchmark, "annotations": str(annotations),
                "answer_format": chosen, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                "limit": limit or 0, "n_records": loaded.total, "processes": world}
    tracked = log_to_mlflow and rank == 0  # one MLflow run however many processes
    with tracking_run(tracked, params, run_name or f"eval-{Path(str(model_ref)).name}", settings):
        # --- predictions (this process's slice; rank 0 gathers them all), in the model family's convention
        started = time.perf_counter()
        shard = generate_shard(model_ref, loaded, chosen, batch_size, max_new_tokens, (rank, world), device, family)
        rows, model_family, limits = shard.rows, shard.family, shard.limits
        coords = coords or model_family.coords
        if tracked:
            import mlflow

            mlflow.log_params({"family": model_family.name, "coords": coords, "device": shard.device})
        if world > 1:
            rows = gather_rows(rows)
            if rank != 0:
                return None
        seconds = time.perf_counter() - started
        write_jsonl(out_dir / "predictions.jsonl", rows)
        # --- scoring
        metrics, scores = score_records(loaded, {r["index"]: r for r in rows}, chosen, coords, n_bootstrap, seed,
                                        min_pixels=limits.min_pixels, max_pixels=limits.max_pixels)
        metrics["model"] = str(model_ref)
        metrics["family"] = model_family.name
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        write_jsonl(out_dir / "per_sample.jsonl", (s.to_row() for s in scores))
        # --- report
        write_report(out_dir / "report", loaded, scores, metrics, f"{model_ref} on {benchmark}", report_samples)
        # --- tracking
        if log_to_mlflow:
            import mlflow

            mlflow.log_metrics({"generation_seconds": seconds, "samples_per_second": len(rows) / max(seconds, 1e-9)})
            log_evaluation(out_dir, metrics, loaded)
    log.info("%s on %s: acc@0.5 %.3f, avg %.3f, n %d (%.1fs)", model_ref, benchmark, metrics["acc@0.5"],
             metrics["avg"], metrics["n"], seconds)
    return metrics


# ----------------------------------------------------------------------------- the DVC stage
def load_hits(per_sample_file: Path, threshold: float = 0.5) -> dict[int, float]:
    """{record index: 1.0 hit / 0.0 miss} from a per_sample.jsonl."""
    key = f"hit@{threshold}"
    return {line.data["index"]: float(line.data[key]) for line in read_jsonl_lines(per_sample_file) if not line.reasons}


def compare_models(hits: dict[str, dict[int, float]], n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap of Acc@0.5 for each "a-b" in COMPARISONS whose two models were evaluated."""
    out = {}
    for a, b in COMPARISONS:
        if a in hits and b in hits:
            shared = sorted(set(hits[a]) & set(hits[b]))
            result = paired_bootstrap([hits[a][i] for i in shared], [hits[b][i] for i in shared], n_bootstrap, seed)
            out[f"{a}-{b}"] = {"metric": "acc@0.5", **result}
    return out


def write_plots_table(results: dict[str, dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "task", "acc@0.5"])
        for model, metrics in results.items():
            for task, block in metrics["per_task"].items():
                writer.writerow([model, task, f"{block['acc@0.5']:.6f}"])
    return path


def contract_entry(metrics: dict[str, Any]) -> dict[str, Any]:
    """A model's entry in metrics/eval.json: the scoring shape + ci95 and the numeric extras."""
    keep = [*(f"acc@{t}" for t in THRESHOLDS), "miou", "n", "avg", "per_task", "ci95", "index_acc", "parsed",
            "errors", "missing", "quarantined"]
    return {k: metrics[k] for k in keep if k in metrics}


def _unavailable(ref: str) -> str | None:
    """Why a stage model cannot be evaluated (None: try it). Pipeline models are local folders
    (models/base, models/sft, ...) or MLflow URIs, which the loader resolves or refuses clearly."""
    from univg.models.loading import MLFLOW_SCHEMES

    if str(ref).startswith(MLFLOW_SCHEMES) or Path(ref).exists():
        return None
    return f"not found: {ref}"


def run_eval_stage(
    params: Any,
    models: dict[str, str],
    annotations: Path,
    out_dir: Path,
    metrics_file: Path,
    compare_file: Path | None = None,
    plots_file: Path | None = None,
) -> dict[str, Any]:
    """Evaluate each available model (name -> reference) and write the pipeline's metrics files.

    A model whose local folder does not exist is skipped with a warning (e.g. a pipeline run
    without GRPO); none available is an error. Returns {"eval", "compare", "skipped"}.
    """
    from univg.models.loading import ModelNotAvailable

    cfg = params.eval
    out_dir, metrics_file = Path(out_dir), Path(metrics_file)
    compare_file = Path(compare_file or cfg.compare_file)
    plots_file = Path(plots_file or cfg.plots_file)
    answer_format = None if cfg.answer_format == "auto" else cfg.answer_format
    results, hits, skipped = {}, {}, {}
    stage_params = {"eval": cfg.model_dump(mode="json"), "models": models, "annotations": str(annotations)}
    rank, _ = process_shard()  # under a multi-process launch, rank 0 tracks and writes; all generate
    with stage_run("eval", params, log_params=stage_params) if rank == 0 else contextlib.nullcontext():
        import mlflow

        for name, ref in models.items():
            reason = _unavailable(ref)
            if reason is None:
                try:
                    metrics = evaluate_model(
                        ref, cfg.benchmark, annotations, out_dir / name, batch_size=cfg.batch_size,
                        max_new_tokens=cfg.max_new_tokens, answer_format=answer_format, limit=cfg.limit or None,
                        report_samples=cfg.report_samples, n_bootstrap=cfg.n_bootstrap, params=params,
                        seed=cfg.seed, run_name=f"eval-{name}", device=cfg.device, family=params.model.family)
                    if metrics is not None:  # None: another rank's share, gathered by rank 0
                        results[name] = metrics
                        hits[name] = load_hits(out_dir / name / "per_sample.jsonl")
                    continue
                except ModelNotAvailable as error:
                    reason = str(error)
            log.warning("eval: skipping model %r (%s)", name, reason)
            skipped[name] = reason
        if rank != 0:
            return {"eval": {}, "compare": {}, "skipped": skipped}
        if not results:
            raise RuntimeError(f"eval: no model could be evaluated: {skipped}")
        # --- the pipeline's metrics files
        entries = {name: contract_entry(m) for name, m in results.items()}
        compare = compare_models(hits, cfg.n_bootstrap, cfg.seed)
        for path, payload in ((metrics_file, entries), (compare_file, compare)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=2) + "\n")
        write_plots_table(results, plots_file)
        for pair, result in compare.items():
            lo, hi = result["ci95"]
            mlflow.log_metrics({f"{pair}/delta": result["delta"], f"{pair}/ci_lo": lo, f"{pair}/ci_hi": hi})
        for path in (metrics_file, compare_file, plots_file):
            mlflow.log_artifact(str(path))
        if skipped:
            mlflow.log_dict(skipped, "skipped_models.json")
    return {"eval": entries, "compare": compare, "skipped": skipped}
