"""Pieces the training benchmarks share: a per-step timer, tiny inputs built in a scratch folder, and the
image patches a sample feeds the vision tower (for the FLOP count of benchmarks/hardware.py)."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall and CPU clocks at the end of every optimizer step, and TRL's running token count at each log.

    A step's time is the interval from the previous step's end to its own: loading and collating its
    batch, forward, backward, the optimizer and logging, everything the run pays per step. The first
    interval (from the start of training) holds one-off costs and is dropped. CPU time (this process,
    all threads) is the figure to compare on a shared machine: wall time there depends on whoever
    else is running.
    """

    def __init__(self) -> None:
        self.ends: dict[int, tuple[float, float]] = {}  # step -> (wall, cpu) at its end
        self.tokens: dict[int, float] = {}  # step -> TRL's num_tokens logged after it

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends[state.global_step] = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends[state.global_step] = (time.perf_counter(), time.process_time())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.tokens[state.global_step] = float(logs["num_tokens"])

    @property
    def wall(self) -> list[float]:
        """Per-step wall seconds, first step dropped."""
        return self._intervals(0)

    @property
    def cpu(self) -> list[float]:
        return self._intervals(1)

    def _intervals(self, clock: int) -> list[float]:
        steps = sorted(self.ends)
        return [self.ends[b][clock] - self.ends[a][clock] for a, b in zip(steps[1:-1], steps[2:], strict=True)]

    def window(self) -> tuple[int, float, float, float]:
        """(steps, wall s, cpu s, tokens) between the first and the last logged step: tokens are exact there."""
        logged = sorted(step for step in self.tokens if step in self.ends)
        if len(logged) < 2:
            raise ValueError("fewer than two logged steps: log more often or run more steps")
        first, last = logged[0], logged[-1]
        return (last - first, self.ends[last][0] - self.ends[first][0], self.ends[last][1] - self.ends[first][1],
                self.tokens[last] - self.tokens[first])


def build_inputs(params, per_task: int, scratch: Path, with_cot: bool) -> tuple[Path, Path]:
    """(training file, tiny model folder) in `scratch`: mig-synth records, with rule CoT if asked."""
    from univg.data.synth import generate_dataset
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data_cfg = params.data.model_copy(update={"train_per_task": per_task, "val_per_task": 0, "test_per_task": 1})
    generate_dataset(data_cfg, scratch / "data", progress=False)
    train_file = scratch / "data" / "train.jsonl"
    if with_cot:
        from univg.cot.generate import generate_cot

        cot_file = scratch / "cot" / "train.jsonl"
        generate_cot(train_file, cot_file, params.cot)
        train_file = cot_file
    build_tiny_model(params.model, corpus_from_records([train_file]), scratch / "base")
    return train_file, scratch / "base"


def image_patches(model, processor, image_sizes) -> list[int]:
    """Patches the vision tower sees for images of these (width, height) sizes, after the processor's resize."""
    merge = model.config.vision_config.spatial_merge_size ** 2
    merged = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in image_sizes])["num_image_tokens"]
    return [n * merge for n in merged]
