"""Where a model runs: the placement rule for eval, predict and serve, and evaluation sharded over processes.

The sharded run is real: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo), the same
launcher a GPU box uses. Its merged predictions must equal a one-process run's, byte for byte, and
it must log one MLflow run, not one per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.test_sft import SIZES, write_records
from univg.models.loading import ModelNotAvailable, choose_placement


# ----------------------------------------------------------------------------- placement
def test_auto_is_the_gpu_in_bf16_when_there_is_one():
    assert choose_placement("auto", cuda_available=True, local_rank=-1) == ("cuda", "bfloat16")
    assert choose_placement("auto", cuda_available=False, local_rank=-1) == ("cpu", None)


def test_each_launched_process_takes_its_own_gpu():
    assert choose_placement("auto", cuda_available=True, local_rank=3) == ("cuda:3", "bfloat16")
    assert choose_placement("cuda", cuda_available=True, local_rank=1) == ("cuda:1", "bfloat16")
    assert choose_placement("cuda:0", cuda_available=True, local_rank=1) == ("cuda:0", "bfloat16")  # named: kept


def test_an_explicit_dtype_and_cpu_are_kept():
    assert choose_placement("cuda", "float32", cuda_available=True, local_rank=-1) == ("cuda", "float32")
    assert choose_placement("cpu", cuda_available=True, local_rank=-1) == ("cpu", None)
    assert choose_placement(None, "float32") == (None, "float32")


def test_cuda_without_a_gpu_is_an_error_not_a_silent_cpu_run():
    with pytest.raises(ModelNotAvailable, match="torch sees no CUDA GPU"):
        choose_placement("cuda", cuda_available=False, local_rank=-1)


def test_eval_loads_the_model_on_the_device_it_is_told(tmp_path, mlflow_uri):
    from univg.eval.run import evaluate_model
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data = write_records(tmp_path / "data", count=2)
    build_tiny_model(SIZES, corpus_from_records([data]), tmp_path / "model")
    with pytest.raises(ModelNotAvailable, match="no CUDA GPU") if not _has_cuda() else contextlib.nullcontext():
        evaluate_model(str(tmp_path / "model"), "mig-synth", data, tmp_path / "out", max_new_tokens=4,
                       n_bootstrap=100, device="cuda", log_to_mlflow=False)
    metrics = evaluate_model(str(tmp_path / "model"), "mig-synth", data, tmp_path / "cpu", max_new_tokens=4,
                             n_bootstrap=100, device="cpu")
    import mlflow

    run = mlflow.search_runs(experiment_names=["univg"], output_format="list")[0]
    assert run.data.params["device"] == "cpu" and metrics["n"] == 2


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------- sharding
def test_two_process_eval_equals_one_process_eval(tmp_path):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data = write_records(tmp_path / "data", count=9)
    model = tmp_path / "model"
    build_tiny_model(SIZES, corpus_from_records([data]), model)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "OMP_NUM_THREADS": "1"}
    command = ["eval", "--model", str(model), "--benchmark", "mig-synth", "--annotations", str(data),
               "-S", "eval.batch_size=2", "-S", "eval.max_new_tokens=12", "-S", "eval.n_bootstrap=100"]
    launch = [str(bin_dir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", str(bin_dir / "univg")]
    two = subprocess.run([*launch, *command, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "[0/2]" in two.stderr and "[1/2]" in two.stderr  # both processes generated a share
    one = subprocess.run([str(bin_dir / "univg"), *command, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]

    merged = (tmp_path / "two" / "predictions.jsonl").read_text()
    assert merged == (tmp_path / "one" / "predictions.jsonl").read_text()
    assert [json.loads(line)["index"] for line in merged.splitlines()] == list(range(9))
    assert json.loads(two.stdout)["n"] == 9  # rank 0 alone prints the result

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["univg"], output_format="list")
    assert sorted(int(r.data.params["processes"]) for r in runs) == [1, 2]  # one run per evaluation, not per rank
