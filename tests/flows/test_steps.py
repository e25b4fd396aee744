"""The flow's wiring helpers, without Prefect: DVC commands, overrides, failures, the summary."""

from __future__ import annotations

import sys

import pytest
import yaml

from flows.steps import (
    StageFailed,
    StageResult,
    apply_overrides,
    dvc_stage_names,
    mlflow_run_link,
    repro_command,
    run_dvc_stage,
    stage_env,
    summary_markdown,
)
from univg.config import ConfigError


def test_stage_names_follow_dvc_yaml_order(standin_repo):
    assert dvc_stage_names(standin_repo) == ["data", "grpo", "eval", "promote"]


def test_stage_order_puts_upstream_first_whatever_the_file_order(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  report: {cmd: r, deps: [metrics/eval.json]}\n"
        "  eval: {cmd: e, deps: [models/sft], metrics: [{metrics/eval.json: {cache: false}}]}\n"
        "  lint: {cmd: l, deps: [src]}\n"
        "  sft: {cmd: s, deps: [data/train.jsonl], outs: [{models/sft: {persist: true}}]}\n"
        "  data: {cmd: d, outs: [data]}\n"
    )
    order = dvc_stage_names(tmp_path)
    assert order.index("data") < order.index("sft") < order.index("eval") < order.index("report")
    assert sorted(order) == ["data", "eval", "lint", "report", "sft"]


def test_missing_pipeline_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc.yaml"):
        dvc_stage_names(tmp_path)


def test_forced_stage_runs_alone():
    assert repro_command("eval")[1:] == ["repro", "eval"]
    assert repro_command("eval", single_item=True)[1:] == ["repro", "--single-item", "eval"]
    # -f without -s would also force every upstream stage
    assert repro_command("eval", force=True)[1:] == ["repro", "--force", "--single-item", "eval"]


def test_stage_env_nests_and_shares_the_store():
    env = stage_env("abc123", "sqlite:////tmp/x.db")
    assert env["UNIVG_PARENT_RUN_ID"] == "abc123"
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/x.db"
    assert env["PATH"].startswith(str(__import__("pathlib").Path(sys.executable).parent))


def test_overrides_are_validated_typed_and_minimal(standin_repo):
    path = standin_repo / "params.yaml"
    before = path.read_text().splitlines()
    applied = apply_overrides(standin_repo, {"grpo.tiny-cpu.learning_rate": "3e-5", "eval.n_bootstrap": "300"})
    assert applied == {"grpo.tiny-cpu.learning_rate": 3e-05, "eval.n_bootstrap": 300}
    raw = yaml.safe_load(path.read_text())
    # a float for PyYAML too (DVC's `-S lr=3e-5` would leave the string '3e-05')
    assert raw["grpo"]["tiny-cpu"]["learning_rate"] == 3e-05
    assert isinstance(raw["eval"]["n_bootstrap"], int)
    after = path.read_text().splitlines()
    assert len(before) == len(after) and sum(a != b for a, b in zip(before, after, strict=True)) == 2


@pytest.mark.parametrize("bad", [{"grpo.lr": 1e-4}, {"eval.n_bootstrap": "many"}, {"gate.min_delta": -1}])
def test_bad_override_changes_nothing(standin_repo, bad):
    path = standin_repo / "params.yaml"
    before = path.read_text()
    with pytest.raises(ConfigError):
        apply_overrides(standin_repo, bad)
    assert path.read_text() == before


def test_failed_stage_carries_its_output_and_is_classified(standin_repo):
    (standin_repo / "dvc.yaml").write_text(
        "stages:\n  boom:\n    cmd: python -c \"print('disk on fire'); raise SystemExit(1)\"\n"
        "  usage:\n    cmd: python -c \"raise SystemExit(2)\"\n"
    )
    env = stage_env("p", "sqlite:////tmp/unused.db")
    with pytest.raises(StageFailed) as crash:
        run_dvc_stage(standin_repo, "boom", False, env, echo=False)
    assert "disk on fire" in crash.value.tail and crash.value.transient
    with pytest.raises(StageFailed) as usage:
        run_dvc_stage(standin_repo, "usage", False, env, echo=False)
    assert not usage.value.transient  # a usage error: retrying cannot help
    with pytest.raises(StageFailed) as unknown:
        run_dvc_stage(standin_repo, "nope", False, env, echo=False)
    assert not unknown.value.transient


def test_summary_has_metrics_table_decision_and_link():
    link = mlflow_run_link("http://mlflow.internal:5000/", "3", "abc")
    assert link == "http://mlflow.internal:5000/#/experiments/3/runs/abc"
    text = summary_markdown(
        {"base": {"acc@0.5": 0.1, "n": 10}, "grpo": {"acc@0.5": 0.62, "n": 10}},
        {"model_name": "univg", "version": "4", "promoted": True, "champion_before": "3", "champion_after": "4",
         "decision": {"reference": "champion:v3", "delta": 0.05, "ci": [0.01, 0.09], "n": 10, "reason": "ok"}},
        [StageResult("eval", "ran", 12.5)], link, "http://mlflow.internal:5000/", {"grpo.tiny-cpu.beta": 0.04},
    )
    assert "| grpo | " in text and "0.620" in text
    assert "promoted to champion" in text and "champion:v3" in text
    assert link in text and "grpo.tiny-cpu.beta=0.04" in text
    assert "| eval | ran | 12.5 |" in text
