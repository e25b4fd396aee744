"""Trainer callbacks shared by SFT and GRPO: MLflow metrics per step, and drawn sample generations.

Both log into the ACTIVE MLflow run (the stage's run, opened by univg.tracking.stage_run). HF's own
MLflowCallback is kept off (report_to="none") because it starts and ends runs by itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, ImageDraw
from transformers import TrainerCallback

from univg.answers import ParsedAnswer, parse_answer
from univg.schema import COORD_MAX, iou, norm_to_pixels

PRED_COLOR = (230, 30, 30)  # red: what the model answered
TRUTH_COLOR = (30, 200, 60)  # green: the ground truth
_METRIC_NAME = re.compile(r"[^0-9A-Za-z_\-./ ]")


def _metric_name(key: str) -> str:
    return _METRIC_NAME.sub("_", key)


def numeric_logs(logs: dict[str, Any]) -> dict[str, float]:
    """The finite numbers in a Trainer log dict, with names MLflow accepts."""
    metrics = {}
    for key, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            metrics[_metric_name(key)] = float(value)
    return metrics


class MlflowMetricsCallback(TrainerCallback):
    """Every number the Trainer logs (loss, learning_rate, grad_norm, entropy, ...) at its global step.

    Runs on the main process only, and only when an MLflow run is active, so a Trainer used
    outside a stage (a notebook, a unit test) does not start stray runs. Metrics go through a
    MetricSink (univg.tracking): if the tracking server goes away, training goes on, the metrics
    wait and are sent when it is back, or end up in <output_dir>/unsent_metrics.jsonl.
    """

    SPILL_FILE = "unsent_metrics.jsonl"

    def __init__(self) -> None:
        self.sink = None

    def on_train_begin(self, args, state, control, **kwargs):
        import mlflow

        from univg.tracking import MetricSink

        run = mlflow.active_run()
        if state.is_world_process_zero and run is not None and self.sink is None:
            self.sink = MetricSink(run.info.run_id, spill_path=f"{args.output_dir}/{self.SPILL_FILE}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = numeric_logs(logs or {})
        if self.sink is not None and metrics:
            self.sink.log(metrics, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.sink is not None:
            self.sink.close()
            self.sink = None


# ----------------------------------------------------------------------------- drawing
def draw_boxes(
    image: Image.Image,
    predicted: Sequence[int] | None,
    truth: Sequence[int] | None,
    caption: str = "",
    scale: int = 3,
) -> Image.Image:
    """The image enlarged `scale` times, predicted box in red, ground truth in green (0..1000 boxes)."""
    width, height = image.size
    canvas_w, canvas_h = width * scale, height * scale
    lines = caption.splitlines() if caption else []
    panel = Image.new("RGB", (canvas_w, canvas_h + 12 * len(lines) + (4 if lines else 0)), "white")
    panel.paste(image.convert("RGB").resize((canvas_w, canvas_h), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(panel)
    for box, color in ((truth, TRUTH_COLOR), (predicted, PRED_COLOR)):
        if box is not None:
            x1, y1, x2, y2 = norm_to_pixels(box, canvas_w, canvas_h)
            draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=color, width=2)
    for i, line in enumerate(lines):
        draw.text((2, canvas_h + 2 + 12 * i), line, fill=(0, 0, 0))
    return panel


def sample_panel(example: dict[str, Any], completion: str) -> tuple[Image.Image, float]:
    """Draw one generated answer on the example's target image; returns the panel and its IoU."""
    parsed: ParsedAnswer | None = parse_answer(completion)
    target = int(example["target_image"])
    truth = list(example["box"])  # as the model family writes boxes (univg.train.examples)
    score = iou(parsed.box, truth) if parsed is not None else 0.0
    width, height = example.get("box_extent") or (COORD_MAX, COORD_MAX)

    def norm1000(box: Any) -> list[float] | None:  # drawing works in 0..1000 of the image
        return None if box is None else [box[0] * COORD_MAX / width, box[1] * COORD_MAX / height,
                                         box[2] * COORD_MAX / width, box[3] * COORD_MAX / height]

    named = parsed.image_index if parsed is not None else None
    caption = "\n".join(
        [
            f"{example.get('id', '?')} [{example.get('task', '?')}] target Image-{target}",
            "pred: none" if parsed is None else f"pred: Image-{named if named else '?'} {list(parsed.box)} IoU {score:.2f}",
            f"gt:   {truth}",
        ]
    )
    return draw_boxes(example["images"][target - 1], norm1000(parsed.box if parsed else None), norm1000(truth),
                      caption), score


class SampleGenerationCallback(TrainerCallback):
    """Every `every_steps` optimizer steps: generate answers for a few fixed examples and log drawings.

    Logged to the active MLflow run: `samples/step_XXXXXX/<id>.png` (red = predicted, green = ground
    truth, on the target image), `samples/step_XXXXXX/completions.json`, and the metric
    `samples/mean_iou`. Generation is greedy, so the pictures of two steps are comparable.
    `generate` has the signature of univg.models.generation.generate_texts.
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        processor: Any,
        every_steps: int,
        max_new_tokens: int = 128,
        generate: Callable[..., list[str]] | None = None,
    ):
        self.examples = list(examples)
        self.processor = processor
        self.every_steps = int(every_steps)
        self.max_new_tokens = max_new_tokens
        self._generate = generate

    def _generate_fn(self) -> Callable[..., list[str]]:
        if self._generate is None:
            from univg.models.generation import generate_texts

            self._generate = generate_texts
        return self._generate

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps <= 0 or not self.examples or state.global_step % self.every_steps:
            return
        self.log_samples(model, state.global_step, is_main=state.is_world_process_zero)

    def log_samples(self, model: Any, step: int, is_main: bool = True) -> list[str]:
        """Generate for the examples (every process, as sharded models need) and log on the main one."""
        import torch

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                texts = self._generate_fn()(
                    model,
                    self.processor,
                    [ex["prompt"] for ex in self.examples],
                    [ex["images"] for ex in self.examples],
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                )
        finally:
            if was_training:
                model.train()
        if is_main:
            self._log(texts, step)
        return texts

    def _log(self, texts: list[str], step: int) -> None:
        import mlflow

        from univg.tracking import best_effort

        if mlflow.active_run() is None:
            return
        folder = f"samples/step_{step:06d}"
        scores, records = [], []
        with best_effort(f"sample generations of step {step}"):
            for example, text in zip(self.examples, texts, strict=True):
                panel, score = sample_panel(example, text)
                name = re.sub(r"[^0-9A-Za-z_.-]", "_", str(example.get("id", len(records))))
                mlflow.log_image(panel, artifact_file=f"{folder}/{name}.png")
                scores.append(score)
                records.append({"id": example.get("id"), "completion": text, "iou": score, "box": list(example["box"])})
            mlflow.log_dict({"step": step, "samples": records}, f"{folder}/completions.json")
            mlflow.log_metric("samples/mean_iou", sum(scores) / len(scores), step=step)
