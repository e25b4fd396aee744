"""A real `mlflow server` (sqlite backend, served artifacts, loopback): a tiny DVC pipeline logs
to it over HTTP, registers its model, and the champion alias moves when a better model comes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from flows import deploy
from flows.steps import apply_overrides, executable

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path):
    process, uri = deploy.start_mlflow_server(tmp_path / "mlflow-server", deploy.free_port(), timeout=120)
    try:
        yield uri, tmp_path / "mlflow-server"
    finally:
        deploy.stop(process)


def _repro(repo: Path, uri: str) -> None:
    env = deploy.tool_env() | {"MLFLOW_TRACKING_URI": uri}
    done = subprocess.run([executable("dvc"), "repro"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _alias(uri: str, alias: str) -> str:
    response = httpx.get(f"{uri}/api/2.0/mlflow/registered-models/alias",
                         params={"name": "univg", "alias": alias}, timeout=10)
    response.raise_for_status()
    return response.json()["model_version"]["version"]


def test_pipeline_logs_over_http_and_the_alias_moves(mlflow_server, tmp_path, monkeypatch):
    from standin import make_standin_repo

    uri, server_root = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    repo = make_standin_repo(tmp_path / "repo", tracking_uri=uri)

    # --- first run: the model is registered and promoted over the base model
    _repro(repo, uri)
    assert _alias(uri, "champion") == "1"
    first = json.loads((repo / "metrics" / "promotion.json").read_text())
    assert first["promoted"] and first["decision"]["reference"] == "base"

    # --- the artifacts went through the server into its artifact root (not the client's disk)
    assert any((server_root / "artifacts").rglob("config.json"))
    assert not (repo / "mlartifacts").exists()

    # --- a longer-trained model: gated against the champion's per-sample record, promoted
    apply_overrides(repo, {"grpo.tiny-cpu.max_steps": 60})
    _repro(repo, uri)
    assert _alias(uri, "champion") == "2" and _alias(uri, "challenger") == "2"
    second = json.loads((repo / "metrics" / "promotion.json").read_text())
    assert second["decision"]["reference"] == "champion:v1" and second["champion_before"] == "1"

    # --- every stage run carries its lineage tags, read back over HTTP
    runs = httpx.post(f"{uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": ["1"], "max_results": 100},
                      timeout=10).json()["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"]["tags"]} for run in runs]
    assert {t["univg.stage"] for t in tags} == {"data", "grpo", "eval", "promote"}
    assert all(t["git_commit"] != "unknown" and "data_hash" in t for t in tags)
