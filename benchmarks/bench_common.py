"""Pieces the training benchmarks share: a per-step timer and tiny inputs built in a scratch folder."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall and CPU time of each optimizer step.

    CPU time (this process, all threads) is the figure to compare on a shared machine: wall time
    there depends on whoever else is running.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.tokens: list[float] = []  # TRL's running token count, at each logged step
        self._started = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.tokens.append(float(logs["num_tokens"]))


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
