"""A tracking server that goes away: training goes on, and no metric is lost.

A real `mlflow server` is stopped in the middle of a real `univg train sft` subprocess and
started again on the same port and store; the training ends normally and the run holds the
loss of every step. MetricSink itself is also checked against a server that never comes back:
what could not be sent lands in a file and replays into the run."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from processes import environment, univg

from flows import deploy
from tests.train.conftest import TINY_MODEL, write_tiny_records

pytestmark = pytest.mark.integration


def loss_steps(uri: str, run_id: str, key: str = "loss") -> list[int]:
    response = httpx.get(f"{uri}/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key},
                         timeout=10)
    response.raise_for_status()
    return sorted(m["step"] for m in response.json().get("metrics", []))


def sft_run_id(uri: str) -> str | None:
    response = httpx.post(f"{uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": ["1"], "max_results": 5},
                          timeout=10)
    if response.status_code != 200:
        return None
    runs = [r for r in response.json().get("runs", []) if r["info"]["run_name"] == "sft"]
    return runs[0]["info"]["run_id"] if runs else None


def test_training_outlives_the_tracking_server(tmp_path):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data = write_tiny_records(tmp_path / "data", count=8)
    base = tmp_path / "base"
    build_tiny_model(TINY_MODEL, corpus_from_records([data]), base)
    port, root = deploy.free_port(), tmp_path / "server"
    server, uri = deploy.start_mlflow_server(root, port, timeout=120)
    steps = 300  # about 15 s of training on 2 cores: the outage lands in the middle
    env = {**environment(tmp_path), "MLFLOW_TRACKING_URI": uri}
    command = univg("train", "sft", "--params", str(tmp_path / "none.yaml"), "--train", str(data), "--model", str(base),
                    "--out", str(tmp_path / "sft"), "--max-steps", str(steps), "-S", "sft.tiny-cpu.logging_steps=1",
                    "-S", "sft.tiny-cpu.save_steps=1000", "-S", "sft.tiny-cpu.sample_every_steps=0",
                    "-S", "sft.tiny-cpu.per_device_train_batch_size=2", cwd=tmp_path)
    training = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        run_id, deadline = None, time.monotonic() + 300
        while run_id is None or len(loss_steps(uri, run_id)) < 3:  # training is under way
            assert training.poll() is None and time.monotonic() < deadline, "training ended before the outage"
            run_id = run_id or sft_run_id(uri)
            time.sleep(0.2)
        deploy.stop(server)  # the server goes away mid-training ...
        time.sleep(3)
        assert training.poll() is None, "training died with the server"
        server, uri = deploy.start_mlflow_server(root, port, timeout=120)  # ... and comes back
        out, err = training.communicate(timeout=600)
    finally:
        deploy.stop(server)
        if training.poll() is None:
            training.kill()
    assert training.returncode == 0, err[-3000:]
    assert "MLflow is not answering" in err and "MLflow answers again" in err  # the outage was noticed, and said
    server, uri = deploy.start_mlflow_server(root, port, timeout=120)
    try:
        assert loss_steps(uri, run_id) == list(range(1, steps + 1))  # every step's loss reached the run
    finally:
        deploy.stop(server)


def test_metrics_a_dead_server_never_took_are_spilled_and_replayed(tmp_path, monkeypatch):
    import mlflow

    from univg.tracking import MetricSink, replay_metrics

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port, root = deploy.free_port(), tmp_path / "server"
    server, uri = deploy.start_mlflow_server(root, port, timeout=120)
    try:
        mlflow.set_tracking_uri(uri)
        run_id = mlflow.MlflowClient().create_run("0").info.run_id
        sink = MetricSink(run_id, spill_path=tmp_path / "unsent.jsonl", flush_timeout_s=3)
        sink.log({"loss": 1.0}, step=1)
        deadline = time.monotonic() + 30
        while loss_steps(uri, run_id) != [1]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        deploy.stop(server)
        for step in range(2, 6):
            sink.log({"loss": 1.0 / step}, step=step)
        assert sink.close() == 4 and len((tmp_path / "unsent.jsonl").read_text().splitlines()) == 4
        server, uri = deploy.start_mlflow_server(root, port, timeout=120)
        assert replay_metrics(tmp_path / "unsent.jsonl", run_id) == 4
        assert loss_steps(uri, run_id) == [1, 2, 3, 4, 5]
    finally:
        deploy.stop(server)
