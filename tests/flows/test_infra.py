"""The infra files are consistent with each other and with the code that uses them."""

from __future__ import annotations

import json

import pytest
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


# ----------------------------------------------------------------------------- accelerate launch configs
def launch_plan(config_file, *flags):
    """What `accelerate launch --config_file F [flags] -m univg.cli train sft` would start: its
    validated arguments and the environment it gives each process. Built as accelerate builds it,
    with no GPU and without starting anything."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    args, defaults, _ = _validate_launch_command(parser.parse_args(
        ["--config_file", str(config_file), *flags, "-m", "univg.cli", "train", "sft"]))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, env


@pytest.mark.parametrize("name, zero_stage, machines", [
    ("multi_gpu.yaml", None, 1),  # DDP
    ("accelerate_zero2.yaml", 2, 1),
    ("accelerate_zero3.yaml", 3, 1),  # the paper's setting
    ("accelerate_zero3_2nodes.yaml", 3, 2),
])
def test_each_accelerate_config_builds_its_launch_without_a_gpu(name, zero_stage, machines):
    args, env = launch_plan(INFRA / "accelerate" / name, "--main_process_port", "0")  # 0: any free port
    assert args.num_processes == 8 * machines and args.num_machines == machines
    if zero_stage is None:
        assert args.multi_gpu and not args.use_deepspeed and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    else:
        assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
        ds_file = deploy.REPO / env["ACCELERATE_DEEPSPEED_CONFIG_FILE"]
        ds = json.loads(ds_file.read_text())
        assert ds["zero_optimization"]["stage"] == zero_stage
        assert ds["train_micro_batch_size_per_gpu"] == "auto"  # batch sizes come from params.yaml only
        assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == str(zero_stage == 3).lower()


def test_the_two_node_config_names_its_rendezvous_and_each_node_its_rank():
    args, _ = launch_plan(INFRA / "accelerate" / "accelerate_zero3_2nodes.yaml", "--machine_rank", "1",
                          "--main_process_ip", "192.168.1.7")
    assert args.deepspeed_multinode_launcher == "standard"  # torchrun on each node, no pdsh/ssh
    # torchrun's view: 2 nodes of 8 processes, this one rank 1, meeting at node 0's address and port
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)
    assert args.rdzv_endpoint == "192.168.1.7:29500"


# ----------------------------------------------------------------------------- the team stack's variables
def test_every_variable_the_stack_uses_is_documented_and_read():
    import re

    compose = (INFRA / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", compose))
    documented = set(re.findall(r"^([A-Z_]+)=", (INFRA / ".env.example").read_text(), re.M))
    assert used and used == documented, f"used but undocumented: {used - documented}; documented, unused: {documented - used}"
    # the worker's connection settings are the names the Python side reads
    worker = yaml.safe_load(compose)["services"]["worker"]["environment"]
    code = "".join(p.read_text() for folder in ("univg", "flows") for p in (deploy.REPO / folder).rglob("*.py"))
    for name in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        assert name in worker and f'"{name}"' in code, name
