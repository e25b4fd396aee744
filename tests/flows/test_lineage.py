"""Versioning you can restore: each flow run is a DVC experiment with its outputs pushed, and the
champion's exact data, params and outputs come back into a fresh clone.

Runs the real flow on the stand-in repo (tests/flows/standin.py) with a local DVC remote.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from flows.pipeline import pipeline
from flows.steps import executable
from univg.cli import app


def _dvc(repo, *args):
    done = subprocess.run([executable("dvc"), *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_runs_are_two_experiments_and_the_champion_restores(prefect_harness, standin_repo, tmp_path):
    _dvc(standin_repo, "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote"))
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "remote"],
                   cwd=standin_repo, check=True)
    params_before = (standin_repo / "params.yaml").read_bytes()

    first = pipeline(repo=str(standin_repo), overrides={"grpo.tiny-cpu.max_steps": "60"}, stage_retries=0)
    second = pipeline(repo=str(standin_repo), overrides={"grpo.tiny-cpu.max_steps": "10"}, stage_retries=0)

    # --- the checkout keeps its params; each run is an experiment DVC lists, its outputs pushed
    assert (standin_repo / "params.yaml").read_bytes() == params_before
    assert first["experiment"] != second["experiment"]
    listed = _dvc(standin_repo, "exp", "list", "--name-only").split()
    assert {first["experiment"], second["experiment"]} <= set(listed)
    assert first["pushed"]["dvc_push"] == "ok" and second["pushed"]["dvc_push"] == "ok"
    shown = json.loads(_dvc(standin_repo, "exp", "show", "--json"))
    assert "60" in json.dumps(shown) and "10" in json.dumps(shown)  # both runs' params are kept

    # --- lineage: the champion (the longer run) names its experiment, commit, hashes and remote
    runner = CliRunner()
    result = runner.invoke(app, ["lineage", "models:/univg@champion", "--params", str(standin_repo / "params.yaml")])
    assert result.exit_code == 0, result.output
    lineage = json.loads(result.output)
    assert lineage["univg.experiment"] == first["experiment"]
    assert lineage["dvc.remote"] == str(tmp_path / "dvc-remote") and lineage["git.repo"] == str(standin_repo)
    assert len(lineage["git_commit"]) == 40 and lineage["dvc_lock_md5"] != "unknown"

    result = runner.invoke(app, ["lineage", "--all", "--params", str(standin_repo / "params.yaml")])
    assert json.loads(result.output) == {first["experiment"]: ["1"], second["experiment"]: ["2"]}

    # --- restore it into a fresh clone: that run's params, every output as DVC recorded it
    into = tmp_path / "restored"
    result = runner.invoke(app, ["restore", "models:/univg@champion", "--into", str(into),
                                 "--params", str(standin_repo / "params.yaml")])
    assert result.exit_code == 0, result.output
    restored = yaml.safe_load((into / "params.yaml").read_text())
    assert restored["grpo"]["tiny-cpu"]["max_steps"] == 60
    assert "up to date" in _dvc(into, "status")  # every output's hash equals the one in dvc.lock
    assert json.loads((into / "models" / "grpo" / "final" / "config.json").read_text())["steps"] == 60
    # its evaluation re-scores to the same metrics
    (into / "metrics" / "eval.json").unlink()
    subprocess.run([sys.executable, "stages.py", "eval"], cwd=into, check=True, capture_output=True)
    assert json.loads((into / "metrics" / "eval.json").read_text()) == first["eval"]


def test_a_model_from_outside_a_flow_has_no_experiment_to_restore(standin_repo, tmp_path):
    from univg.lineage import LineageError, model_lineage

    with pytest.raises(LineageError, match="models:/nothing-here@champion"):
        model_lineage("models:/nothing-here@champion")
    result = CliRunner().invoke(app, ["lineage", "not-a-model-uri"])
    assert result.exit_code == 1 and "models:/NAME@ALIAS" in result.output


def test_an_ablation_grid_is_runs_of_the_flow_and_one_table(prefect_harness, standin_repo):
    """weighting x seeds, each a flow run (a DVC experiment), then the table with intervals and
    the seed spread, as markdown, JSON and a plot, also logged to MLflow."""
    import mlflow

    from flows.ablation import ablation

    summary = ablation(repo=str(standin_repo), weighting=["exp", "none"], seeds=[0, 1], stage_retries=0)

    assert [row["setting"] for row in summary["rows"]] == ["exp", "none"]
    assert all(set(row["seeds"]) == {"0", "1"} for row in summary["rows"])
    assert len(set(summary["experiments"].values())) == 4  # four runs, four experiments
    listed = set(_dvc(standin_repo, "exp", "list", "--name-only").split())
    assert set(summary["experiments"].values()) <= listed
    exp_row = summary["rows"][0]
    low, high = exp_row["ci95"]
    assert low <= exp_row["acc"] <= high and "vs_baseline" in exp_row and "vs_baseline" not in summary["rows"][1]
    report = standin_repo / "reports" / "ablation"
    assert "| exp |" in (report / "ablation.md").read_text() and (report / "ablation.png").stat().st_size > 1000
    assert json.loads((report / "ablation.json").read_text())["rows"][1]["setting"] == "none"
    run = mlflow.search_runs(experiment_names=["univg"], filter_string="tags.`univg.stage` = 'ablation'",
                             output_format="list")[0]
    assert {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "ablation")} == {
        "ablation/ablation.json", "ablation/ablation.md", "ablation/ablation.png"}


def test_restore_refuses_tags_that_would_reach_git_as_options():
    from univg.lineage import LineageError, _checked, experiment_name
    from univg.tracking import without_credentials

    good = {"univg.experiment": "univg-crimson-otter-1a2b3c4d", "git.repo": "/repo", "dvc.remote": "/remote"}
    assert _checked(dict(good)) == good
    for key, value in (("git.repo", "--upload-pack=touch /tmp/owned"), ("univg.experiment", "main;rm"),
                       ("dvc.remote", "-x"), ("git.repo", "")):
        with pytest.raises(LineageError):
            _checked({**good, key: value})
    assert experiment_name("crimson otter", "1a2b3c4d-5e6f") == "univg-crimson-otter-1a2b3c4d"
    assert without_credentials("https://ci-token:s3cret@git.example.com/team/univg.git") == \
        "https://git.example.com/team/univg.git"
