"""The infra files are consistent with each other and with the code that uses them."""

from __future__ import annotations

import json

import yaml

from flows import deploy
from univg.config import Params

INFRA = deploy.REPO / "infra"


def test_gpu_profiles_point_at_the_zero3_config():
    zero3 = json.loads((INFRA / "accelerate" / "zero3.json").read_text())
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["train_micro_batch_size_per_gpu"] == "auto"  # batch sizes come from params.yaml only
    params = Params()
    for profile in (params.sft.qwen2_vl_7b, params.grpo.qwen2_vl_7b):
        assert (deploy.REPO / profile.deepspeed).resolve() == (INFRA / "accelerate" / "zero3.json").resolve()
    launch = yaml.safe_load((INFRA / "accelerate" / "accelerate_zero3.yaml").read_text())
    assert launch["distributed_type"] == "DEEPSPEED"
    assert (deploy.REPO / launch["deepspeed_config"]["deepspeed_config_file"]).is_file()
    assert yaml.safe_load((INFRA / "accelerate" / "multi_gpu.yaml").read_text())["distributed_type"] == "MULTI_GPU"


def test_prefect_yaml_entrypoint_is_the_pipeline_flow():
    spec = deploy.deployments()[0]
    path, name = spec["entrypoint"].split(":")
    assert (deploy.REPO / path).is_file() and f"def {name}(" in (deploy.REPO / path).read_text()
    assert spec["work_pool"]["name"] == deploy.work_pool_name() == "univg-process"


def test_compose_stack_wires_the_worker_to_both_servers():
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "prefect-server", "worker"} <= set(services)
    worker = services["worker"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert f"--pool {deploy.work_pool_name()}" in worker["command"] and "flows/deploy.py register" in worker["command"]
    assert "postgresql" in services["mlflow"]["command"] and "s3://mlflow" in services["mlflow"]["command"]
    assert "postgresql+asyncpg" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    for dockerfile in ("Dockerfile", "mlflow.Dockerfile"):
        assert (INFRA / dockerfile).is_file()


def test_k8s_template_declares_every_placeholder_it_uses():
    from prefect.utilities.templating import find_placeholders

    template = json.loads((INFRA / "k8s" / "work-pool-template.json").read_text())
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    declared = set(template["variables"]["properties"])
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert template["variables"]["properties"]["gpus"]["default"] == 8
