"""The scheduled deployment end to end on loopback: a real `prefect server start` (temporary
PREFECT_HOME), infra/prefect.yaml registered with its cron schedule, a run triggered with a
params override, and a process worker executing it to COMPLETED in a stand-in checkout."""

from __future__ import annotations

import json
import subprocess
import time

import mlflow
import pytest
import yaml

from flows import deploy
from flows.steps import executable

pytestmark = pytest.mark.integration


@pytest.fixture
def prefect_server(tmp_path):
    home = tmp_path / "prefect-home"
    server, api_url = deploy.start_server(home, deploy.free_port(), timeout=120)
    try:
        yield api_url, home
    finally:
        deploy.stop(server)


def test_declared_schedule_is_a_nightly_cron_on_a_process_pool():
    spec = yaml.safe_load((deploy.REPO / "infra" / "prefect.yaml").read_text())["deployments"][0]
    assert spec["schedules"][0]["cron"] == "0 2 * * *"
    assert spec["entrypoint"] == "flows/pipeline.py:pipeline"
    assert deploy.POOL_TYPE == "process" and spec["concurrency_limit"] == 1


def test_registered_deployment_runs_to_completed_on_a_worker(prefect_server, standin_repo):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api_url, home = prefect_server
    env = deploy.prefect_env(api_url, home)
    deploy.register(standin_repo, env)

    worker = None
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            # --- the deployment and its schedule, as the API reports them
            deployment = client.read_deployment_by_name("univg-pipeline/nightly")
            assert deployment.work_pool_name == "univg-process"
            assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [("0 2 * * *", True)]
            assert client.read_work_pool("univg-process").type == "process"

            # --- trigger a run with an override; a worker picks it up
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"overrides": {"grpo.tiny-cpu.seed": 7}, "stage_retries": 0})
            worker = deploy.start_worker("univg-process", env, home / "worker.log")
            deadline = time.monotonic() + 150
            state = client.read_flow_run(run.id).state
            while not state.is_final() and time.monotonic() < deadline:
                time.sleep(2)
                state = client.read_flow_run(run.id).state
        log = (home / "worker.log").read_text(errors="replace")[-4000:]
        assert state.is_completed(), f"flow run ended {state.name}:\n{log}"
    finally:
        deploy.stop(worker)

    # --- it ran in the checkout as a DVC experiment: params.yaml as it was, the override kept in the
    # experiment, the model registered with that experiment, the decision recorded
    assert yaml.safe_load((standin_repo / "params.yaml").read_text())["grpo"]["tiny-cpu"]["seed"] == 0
    shown = subprocess.run([executable("dvc"), "exp", "show", "--json"], cwd=standin_repo, capture_output=True,
                           text=True, check=True).stdout
    assert '"seed": 7' in json.dumps(json.loads(shown))
    promotion = json.loads((standin_repo / "metrics" / "promotion.json").read_text())
    assert promotion["promoted"] is True
    mlflow.set_tracking_uri(f"sqlite:///{standin_repo / 'mlruns.db'}")
    champion = mlflow.MlflowClient().get_model_version_by_alias("univg", "champion")
    assert str(champion.version) == promotion["version"]
