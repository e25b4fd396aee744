"""The real pipeline (dvc.yaml: data -> ... -> promote) as a scheduled deployment on a real Prefect
server, run by a process worker on a tiny params override, ends with a registered model and a
promotion decision. Runs in a copy of the checkout, so the working tree is never touched."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import mlflow
import pytest
import yaml

from flows import deploy

pytestmark = pytest.mark.integration

TINY = {
    "data.tasks": ["region", "common_object"], "data.train_per_task": 4, "data.val_per_task": 1,
    "data.test_per_task": 4, "model.vocab_size": 400, "model.hidden_size": 64, "model.num_layers": 2,
    "model.intermediate_size": 128, "model.vision_depth": 1, "model.vision_embed_dim": 32, "model.vision_heads": 2,
    "model.pretrain_steps": 2, "model.pretrain_batch_size": 2,
    "sft.tiny-cpu.max_steps": 2, "sft.tiny-cpu.per_device_train_batch_size": 4,
    "grpo.tiny-cpu.max_steps": 1, "grpo.tiny-cpu.per_device_train_batch_size": 4,
    "grpo.tiny-cpu.num_generations": 2, "grpo.tiny-cpu.max_completion_length": 16,
    "eval.max_new_tokens": 16, "eval.n_bootstrap": 100, "eval.batch_size": 8,
}


def copy_checkout(destination):
    """The project's tracked and unignored files (plus .git, for the commit tag) in `destination`."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=deploy.REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in [*listed, ".dvc/config", ".dvcignore"]:
        source = deploy.REPO / name
        if source.is_file() and "__pycache__" not in name:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    shutil.copytree(deploy.REPO / ".git", destination / ".git")
    return destination


def test_real_pipeline_deployment_ends_with_a_registered_model_and_a_decision(tmp_path, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not (deploy.REPO / "dvc.yaml").is_file():
        pytest.skip("no dvc.yaml in this checkout")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the checkout's own sqlite store
    repo = copy_checkout(tmp_path / "checkout")
    # univg-tiny's own pipeline, made stale on purpose: a flow run must leave its lock file alone
    pretrain_lock = repo / "pretrain" / "dvc.lock"
    pretrain_lock.write_text(pretrain_lock.read_text().replace("md5: ", "md5: 0", 1))
    pretrain_before = pretrain_lock.read_bytes()
    home = tmp_path / "prefect-home"
    server, api_url = deploy.start_server(home, deploy.free_port(), timeout=120)
    worker = None
    try:
        env = deploy.prefect_env(api_url, home)
        deploy.register(repo, env)
        with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("univg-pipeline/nightly")
            assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"overrides": TINY, "stage_retries": 0})
            worker = deploy.start_worker("univg-process", env, home / "worker.log")
            deadline = time.monotonic() + 900
            state = client.read_flow_run(run.id).state
            while not state.is_final() and time.monotonic() < deadline:
                time.sleep(3)
                state = client.read_flow_run(run.id).state
        log = (home / "worker.log").read_text(errors="replace")[-6000:]
        assert state.is_completed(), f"flow run ended {state.name}:\n{log}"
    finally:
        deploy.stop(worker)
        deploy.stop(server)

    stages = list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    assert stages[-1] == "promote"
    assert pretrain_lock.read_bytes() == pretrain_before, "the flow committed pretrain/dvc.yaml's stage"
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert {"base", "sft", "grpo"} <= set(metrics)
    promotion = json.loads((repo / "metrics" / "promotion.json").read_text())
    assert promotion["version"] == "1" and promotion["decision"]["reason"]

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlruns.db'}")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("univg", "challenger")
    assert version.tags["univg.gate.decision"] in {"promote", "keep"} and version.tags["data_hash"] != "unknown"
    runs = mlflow.search_runs(experiment_names=["univg"], output_format="list")
    parent = next(r for r in runs if r.data.tags.get("univg.stage") == "pipeline")
    nested = {r.data.tags.get("univg.stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(stages) <= nested
