"""SFT and GRPO as users launch them on a GPU box, here with 2 CPU processes (gloo):
`accelerate launch --multi_gpu --num_processes 2 -m univg.cli train ...`.

Asserted: each stage logs one MLflow run, not one per rank; GRPO's checkpoint resumes under 2
processes. (That difficulty weights stay grouped by prompt across processes is asserted exactly by
tests/train/test_grpo.py::test_advantages_are_exact_across_two_processes.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import TINY_MODEL, write_tiny_records

BIN = Path(sys.executable).parent
OVERRIDES = {
    "sft.tiny-cpu.per_device_train_batch_size": 2, "sft.tiny-cpu.logging_steps": 1, "sft.tiny-cpu.save_steps": 1,
    "sft.tiny-cpu.max_pixels": 3136,
    "grpo.tiny-cpu.per_device_train_batch_size": 4, "grpo.tiny-cpu.num_generations": 4,
    "grpo.tiny-cpu.max_completion_length": 8, "grpo.tiny-cpu.save_steps": 1, "grpo.tiny-cpu.logging_steps": 1,
    "grpo.tiny-cpu.max_pixels": 3136,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    folder = tmp_path_factory.mktemp("multiprocess")
    data = write_tiny_records(folder / "data", count=8)
    build_tiny_model(TINY_MODEL, corpus_from_records([data]), folder / "model")
    return folder, data


def launch(folder: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns.db'}", "ACCELERATE_USE_CPU": "true",
           "OMP_NUM_THREADS": "1"}
    overrides = [item for key, value in OVERRIDES.items() for item in ("-S", f"{key}={value}")]
    command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(BIN / "univg"), "train", stage,
               "--params", str(folder / "none.yaml"), *overrides, *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def stage_runs(folder: Path, stage: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlruns.db'}")
    return mlflow.search_runs(experiment_names=["univg"], filter_string=f"tags.`univg.stage` = '{stage}'",
                              output_format="list")


def test_sft_under_two_processes_logs_one_run(setup):
    folder, data = setup
    launch(folder, "sft", "--train", str(data), "--model", str(folder / "model"), "--out", str(folder / "sft"),
           "--max-steps", "2")
    summary = json.loads((folder / "sft" / "summary.json").read_text())
    assert summary["global_step"] == 2
    assert len(stage_runs(folder, "sft")) == 1


def test_grpo_under_two_processes_logs_one_run_and_resumes(setup):
    folder, data = setup
    out = folder / "grpo"
    launch(folder, "grpo", "--train", str(data), "--model", str(folder / "model"), "--out", str(out), "--max-steps", "1")
    first = json.loads((out / "grpo_summary.json").read_text())
    assert first["global_step"] == 1 and first["resumed_from"] is None
    runs = stage_runs(folder, "grpo")
    assert len(runs) == 1 and runs[0].data.params["processes"] == "2"

    launch(folder, "grpo", "--train", str(data), "--model", str(folder / "model"), "--out", str(out), "--max-steps", "2")
    again = json.loads((out / "grpo_summary.json").read_text())
    assert again["resumed_from"].endswith("checkpoint-1") and again["global_step"] == 2
    assert again["difficulty"]["generation_batches"] == 2  # the history carried over the resume
    assert len(stage_runs(folder, "grpo")) == 2  # one per launch
