"""Scoring (contract): a benchmark's annotations + a predictions JSONL -> Acc@0.3/0.5/0.7, mIoU.

    univg score --benchmark NAME --annotations FILE --predictions FILE --out FILE

- Predictions are JSONL rows {"index": i, "response": "..."} (optionally "error": "..."), `index`
  being the record's 0-based position in the annotation file. A record with no prediction, an
  error row, a response with no box, and a quarantined annotation row are all misses (IoU 0).
  Bad prediction lines (malformed, no/out-of-range index, duplicates: the first one wins) are
  counted and listed under `prediction_problems`, never silently dropped.
- Boxes come from `parse_answer(text, allow_untagged=True)`, THE answer parser: the first
  `<answer>...</answer>` span (an unclosed `<answer>` is a miss), or, with no `<answer>` tag at
  all (untrained base models), the whole text minus `<think>...</think>` blocks.
- Boxes are compared in 0..1000 space. Ground truth: see the loaders (MIG-Bench 0..1 answers
  scaled by 1000, the revised 0..1000 copy as is). Predictions, `coords`:
    norm1000  0..1000 relative to the target image (Qwen2-VL; our models; the default)
    pixels    absolute pixels of the original target image (alias: absolute)
    qwen25    absolute pixels of the target image as Qwen2.5-VL resized it (alias: qwen25-abs;
              smart_resize with `min_pixels`/`max_pixels`, factor 28)
  The target image's size comes from the record's meta["image_size"] [w, h] when present, else
  from the image file (unreadable: the sample is an error and a miss).
- Answer format: `indexed` scores the image index: an answer that names no image or the wrong
  one is a miss for every headline metric (its box IoU is still kept per sample as `box_iou`),
  and `index_acc` (share of all records whose answer named the target image) is reported.
  `univg-r1` ignores the index. mig-bench never scores the index (contract). Defaults: mig-synth
  indexed; mig-bench, univg-r1, reasoning-grounding univg-r1.
- Output: acc@0.3, acc@0.5, acc@0.7, miou, n (ALL rows of the annotation file, quarantined ones
  included), avg (unweighted mean of per-task acc@0.5), per_task {task: {acc@0.3, acc@0.5,
  acc@0.7, miou, n}}, plus ci95 (bootstrap 95% intervals; `avg` resampled within each task),
  parsed (share of records with a parsed box), errors, missing, quarantined (counts), index_acc
  (indexed mode), prediction_problems. A quarantined row with no readable task counts in the
  overall figures only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from univg.answers import check_format, completion_text, parse_answer
from univg.data.benchmarks import BenchmarkSample, LoadedBenchmark, image_size, load_benchmark
from univg.eval.stats import bootstrap_ci, stratified_bootstrap_mean_of_means
from univg.models.family import FAMILIES, PixelLimits
from univg.schema import COORD_MAX, iou, read_jsonl_lines, write_jsonl

THRESHOLDS = (0.3, 0.5, 0.7)
COORDS = ("norm1000", "pixels", "qwen25")
COORD_ALIASES = {"qwen25-abs": "qwen25", "qwen2.5": "qwen25", "absolute": "pixels", "abs": "pixels"}
QWEN25_MIN_PIXELS = 56 * 56
QWEN25_MAX_PIXELS = 12_845_056  # Qwen2.5-VL's preprocessor default
_EPS = 1e-9  # an IoU of exactly 0.5 must not miss through float rounding


@dataclass
class SampleScore:
    """One record's result; `iou` is what the headline metrics use (0 for any miss)."""

    index: int
    id: str
    task: str | None
    status: str  # scored | wrong_image | no_box | missing | error | quarantined
    iou: float = 0.0
    box_iou: float = 0.0  # IoU of the parsed box whatever image it named
    pred_box: list[float] | None = None
    pred_image: int | None = None
    gt_box: list[float] | None = None
    target_image: int | None = None
    error: str | None = None
    response: str = ""

    def hit(self, threshold: float = 0.5) -> bool:
        return self.iou >= threshold - _EPS

    @property
    def named_target(self) -> bool:
        return self.pred_image is not None and self.pred_image == self.target_image

    def to_row(self) -> dict[str, Any]:
        return {**asdict(self), **{f"hit@{t}": self.hit(t) for t in THRESHOLDS}}


# ----------------------------------------------------------------------------- predictions
def read_predictions(path: str | Path, total: int) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """{index: row} from a predictions JSONL, and a list of problems (bad lines are reported)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    rows: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    for line in read_jsonl_lines(path):
        where = f"{path.name}:{line.number}"
        if line.reasons:
            problems.append(f"{where}: {'; '.join(line.reasons)}")
            continue
        data = line.data
        index = data.get("index") if isinstance(data, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            problems.append(f"{where}: no integer 'index'")
        elif not 0 <= index < total:
            problems.append(f"{where}: index {index} outside 0..{total - 1}")
        elif index in rows:
            problems.append(f"{where}: duplicate index {index} (the first one is scored)")
        else:
            if "response" not in data and "error" not in data:
                problems.append(f"{where}: no 'response' (scored as an empty answer)")
            rows[index] = data
    return rows, problems


# ----------------------------------------------------------------------------- coordinates
def target_size(record: dict[str, Any], base_dir: Path) -> tuple[int, int]:
    """(width, height) of the record's target image: meta["image_size"], else the file header."""
    size = (record.get("meta") or {}).get("image_size")
    if isinstance(size, list | tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    return image_size(record["images"][record["target_image"] - 1], base_dir)  # inside base_dir only


def to_norm1000(box: list[float], coords: str, size: tuple[int, int] | None = None,
                min_pixels: int = QWEN25_MIN_PIXELS, max_pixels: int = QWEN25_MAX_PIXELS) -> list[float]:
    """A predicted box in `coords` -> 0..1000 floats (not rounded, not clipped)."""
    if coords == "norm1000":
        return [float(v) for v in box]
    if size is None:
        raise ValueError(f"coords {coords!r} needs the target image size")
    if coords == "qwen25":
        return FAMILIES["qwen2_5_vl"].to_norm1000(box, size, PixelLimits(min_pixels, max_pixels, factor=28))
    if coords != "pixels":
        raise ValueError(f"unknown coords {coords!r}; choose from {list(COORDS)}")
    width, height = size
    x1, y1, x2, y2 = box
    return [x1 * COORD_MAX / width, y1 * COORD_MAX / height, x2 * COORD_MAX / width, y2 * COORD_MAX / height]


# ----------------------------------------------------------------------------- per sample
def score_sample(sample: BenchmarkSample, prediction: dict[str, Any] | None, check_index: bool,
                 coords: str = "norm1000", base_dir: Path | None = None, **pixel_limits: int) -> SampleScore:
    record = sample.record
    gt = (record.get("meta") or {}).get("box_exact") or record["box"]
    result = SampleScore(sample.index, record["id"], record["task"], "missing", gt_box=[float(v) for v in gt],
                         target_image=record["target_image"])
    if prediction is None:
        return result
    result.response = completion_text(prediction.get("response", ""))
    if prediction.get("error"):
        result.status, result.error = "error", str(prediction["error"])
        return result
    parsed = parse_answer(result.response, allow_untagged=True)
    if parsed is None:
        result.status = "no_box"
        return result
    result.pred_image = parsed.image_index
    try:
        size = target_size(record, base_dir or Path(".")) if coords != "norm1000" else None
        result.pred_box = to_norm1000(list(parsed.box), coords, size, **pixel_limits)
    except ValueError as error:  # the size of the target image could not be read
        result.status, result.error = "error", str(error)
        return result
    result.box_iou = iou(result.pred_box, result.gt_box)
    if check_index and not result.named_target:
        result.status = "wrong_image"
        return result
    result.status, result.iou = "scored", result.box_iou
    return result


def resolve_coords(coords: str) -> str:
    chosen = COORD_ALIASES.get(coords, coords)
    if chosen == "unit":
        raise ValueError("coords 'unit': the answer parser reads integer boxes only; 0..1 floats are for "
                         "annotations (mig-bench), not predictions")
    if chosen not in COORDS:
        raise ValueError(f"unknown coords {coords!r}; choose from {list(COORDS)}")
    return chosen


def resolve_answer_format(benchmark: LoadedBenchmark, answer_format: str | None) -> str:
    return check_format(answer_format or benchmark.answer_format)


def score_samples(benchmark: LoadedBenchmark, predictions: dict[int, dict[str, Any]],
                  answer_format: str | None = None, coords: str = "norm1000", **pixel_limits: int) -> list[SampleScore]:
    """One SampleScore per row of the annotation file (quarantined rows included), by position."""
    coords = resolve_coords(coords)
    check_index = resolve_answer_format(benchmark, answer_format) == "indexed" and benchmark.scores_image_index
    scores = [score_sample(s, predictions.get(s.index), check_index, coords, benchmark.base_dir, **pixel_limits)
              for s in benchmark.samples]
    for row in benchmark.quarantined:
        # A stable id, so per-sample files of two models pair on every row (registry.read_hits keys by id).
        index = row["index"]
        scores.append(SampleScore(index, f"row-{index}", row["task"], "quarantined", error="; ".join(row["reasons"]),
                                  response=completion_text((predictions.get(index) or {}).get("response", ""))))
    return sorted(scores, key=lambda s: s.index)


# ----------------------------------------------------------------------------- aggregation
def _accuracy_block(ious: np.ndarray) -> dict[str, float]:
    block = {f"acc@{t}": float(np.mean(ious >= t - _EPS)) for t in THRESHOLDS}
    block["miou"] = float(np.mean(ious))
    return block


def summarize(scores: list[SampleScore], index_mode: bool = False, n_bootstrap: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """The contract's metrics from per-sample results (misses have IoU 0)."""
    if not scores:
        raise ValueError("nothing to score: the benchmark has no rows")
    ious = np.array([s.iou for s in scores], dtype=float)
    by_task: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        if s.task is not None:
            by_task[s.task].append(s.iou)
    per_task = {task: {**_accuracy_block(np.array(v)), "n": len(v)} for task, v in sorted(by_task.items())}
    metrics: dict[str, Any] = {**_accuracy_block(ious), "n": len(scores)}
    metrics["avg"] = float(np.mean([t["acc@0.5"] for t in per_task.values()])) if per_task else 0.0
    metrics["per_task"] = per_task
    if n_bootstrap > 0:
        metrics["ci95"] = bootstrap_block(scores, n_bootstrap, seed)
    metrics["parsed"] = float(np.mean([s.pred_box is not None for s in scores]))
    if index_mode:
        metrics["index_acc"] = float(np.mean([s.named_target for s in scores]))
    metrics["errors"] = sum(s.status == "error" for s in scores)
    metrics["missing"] = sum(s.status == "missing" for s in scores)
    metrics["quarantined"] = sum(s.status == "quarantined" for s in scores)
    return metrics


def bootstrap_block(scores: list[SampleScore], n_bootstrap: int, seed: int) -> dict[str, list[float]]:
    ious = np.array([s.iou for s in scores], dtype=float)
    block = {f"acc@{t}": list(bootstrap_ci(ious >= t - _EPS, n_bootstrap, seed)) for t in THRESHOLDS}
    block["miou"] = list(bootstrap_ci(ious, n_bootstrap, seed))
    groups: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        if s.task is not None:
            groups[s.task].append(float(s.hit(0.5)))
    block["avg"] = list(stratified_bootstrap_mean_of_means(groups, n_bootstrap, seed))
    return block


def score_records(benchmark: LoadedBenchmark, predictions: dict[int, dict[str, Any]],
                  answer_format: str | None = None, coords: str = "norm1000", n_bootstrap: int = 1000,
                  seed: int = 0, **pixel_limits: int) -> tuple[dict[str, Any], list[SampleScore]]:
    """Pure scoring: (metrics, per-sample results) for predictions keyed by record position."""
    chosen, coords = resolve_answer_format(benchmark, answer_format), resolve_coords(coords)
    scores = score_samples(benchmark, predictions, chosen, coords, **pixel_limits)
    metrics = summarize(scores, chosen == "indexed", n_bootstrap, seed)
    head = {"benchmark": benchmark.name, "answer_format": chosen, "coords": coords,
            "image_index_scored": chosen == "indexed" and benchmark.scores_image_index}
    return {**metrics, **head}, scores


def per_sample_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.per_sample.jsonl")


def score_file(benchmark: str, annotations: Path, predictions: Path, out: Path | None = None,
               image_root: Path | None = None, coords: str = "norm1000", answer_format: str | None = None,
               n_bootstrap: int = 1000, seed: int = 0, min_pixels: int = QWEN25_MIN_PIXELS,
               max_pixels: int = QWEN25_MAX_PIXELS) -> dict[str, Any]:
    """`univg score`: load, score, write `out` (JSON) and `<out stem>.per_sample.jsonl` beside it."""
    # Scoring reads no pixels, so a missing image is not a reason to quarantine here: its
    # prediction row already carries the error (a miss), and `n` counts the row either way.
    loaded = load_benchmark(benchmark, annotations, image_root, check_images=False)
    rows, problems = read_predictions(predictions, loaded.total)
    metrics, scores = score_records(loaded, rows, answer_format, coords, n_bootstrap, seed,
                                    min_pixels=min_pixels, max_pixels=max_pixels)
    metrics["prediction_problems"] = {"count": len(problems), "examples": problems[:20]}
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n")
        write_jsonl(per_sample_path(out), (s.to_row() for s in scores))
    return metrics
