"""The pipeline flow's logic on a temporary Prefect API (prefect_test_harness) and a stand-in repo."""

from __future__ import annotations

import json

import mlflow
import pytest
import yaml

from flows.pipeline import pipeline

pytestmark = pytest.mark.integration


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda a: a.created)[-1]


def test_flow_runs_stages_under_one_parent_and_ends_with_a_decision(prefect_harness, standin_repo):
    result = pipeline(repo=str(standin_repo), overrides={"grpo.tiny-cpu.seed": "1"}, stage_retries=0)

    # --- every stage ran, in dvc.yaml order, each nested under the flow's parent run
    assert [(s["stage"], s["status"]) for s in result["stages"]] == [
        ("data", "ran"), ("grpo", "ran"), ("eval", "ran"), ("promote", "ran")]
    uri = f"sqlite:///{standin_repo / 'mlruns.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["univg"], output_format="list")
    stage_runs = {r.data.tags["univg.stage"]: r for r in runs if r.data.tags.get("univg.stage") != "pipeline"}
    assert set(stage_runs) == {"data", "grpo", "eval", "promote"}
    assert {r.data.tags.get("mlflow.parentRunId") for r in stage_runs.values()} == {result["mlflow_run_id"]}
    assert all(r.data.tags["data_hash"] != "unknown" for k, r in stage_runs.items() if k != "data")
    parent = mlflow.get_run(result["mlflow_run_id"])
    assert parent.data.params["override.grpo.tiny-cpu.seed"] == "1"
    assert parent.data.metrics["grpo.acc_at_0.5"] == result["eval"]["grpo"]["acc@0.5"]

    # --- the promotion gate was the last step: a registered champion with its decision
    promotion = json.loads((standin_repo / "metrics" / "promotion.json").read_text())
    assert promotion["promoted"] and promotion["decision"]["reference"] == "base"
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias("univg", "champion").version == 1

    # --- Prefect artifacts: the summary table and the MLflow link
    summary = _artifact("univg-pipeline-summary").data
    assert "| grpo |" in summary and "promoted to champion" in summary and result["mlflow_link"] in summary
    assert _artifact("univg-mlflow-run").data.startswith("[MLflow parent run](")

    # --- the run is a DVC experiment and the checkout's params.yaml is as it was
    assert yaml.safe_load((standin_repo / "params.yaml").read_text())["grpo"]["tiny-cpu"]["seed"] == 0
    assert result["experiment"] and parent.data.tags["univg.experiment"] == result["experiment"]

    # --- nothing changed: DVC skips everything; forcing promote again changes nothing (idempotent)
    again = pipeline(repo=str(standin_repo), overrides={"grpo.tiny-cpu.seed": "1"}, force=["promote"], stage_retries=0)
    assert [s["status"] for s in again["stages"]] == ["skipped", "skipped", "skipped", "ran"]
    assert len(client.search_model_versions("name='univg'")) == 1
    assert json.loads((standin_repo / "metrics" / "promotion.json").read_text()) == promotion


def test_transient_failure_is_retried_and_a_permanent_one_is_not(prefect_harness, standin_repo):
    (standin_repo / "dvc.yaml").write_text(
        "stages:\n"
        "  flaky:\n"  # fails on its first attempt only, like a lost connection
        "    cmd: python -c \"import pathlib,sys; p=pathlib.Path('attempts'); n=len(p.read_text()) if p.exists() else 0;"
        " p.write_text('x'*(n+1)); sys.exit(1 if n == 0 else 0)\"\n"
        "  broken:\n"  # a usage error: retrying cannot fix it
        "    cmd: python -c \"import pathlib,sys; p=pathlib.Path('broken'); p.write_text(p.read_text()+'x' if p.exists() else 'x');"
        " sys.exit(2)\"\n"
    )
    result = pipeline(repo=str(standin_repo), stages=["flaky"], stage_retries=2, retry_delay_seconds=0)
    assert result["stages"][0]["status"] == "ran"
    assert (standin_repo / "attempts").read_text() == "xx"

    with pytest.raises(Exception, match="broken"):
        pipeline(repo=str(standin_repo), stages=["broken"], stage_retries=2, retry_delay_seconds=0)
    assert (standin_repo / "broken").read_text() == "x"


def test_unknown_forced_stage_is_refused(prefect_harness, standin_repo):
    with pytest.raises(ValueError, match="not in"):
        pipeline(repo=str(standin_repo), force=["tarin"])
