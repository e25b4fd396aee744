"""The `univg` command: help, params, and clear errors for bad input (never a bare traceback)."""

import json

from typer.testing import CliRunner

from univg.cli import app

runner = CliRunner()


def test_help_lists_every_verb():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("data", "model", "cot", "train", "eval", "score", "promote", "serve", "params"):
        assert verb in result.output


def test_params_applies_overrides(tmp_path):
    result = runner.invoke(app, ["params", "--params", str(tmp_path / "none.yaml"), "-S", "data.seed=7"])
    assert result.exit_code == 0
    assert "seed: 7" in result.output


def test_params_defaults_print_the_built_in_values_whatever_the_file_says(tmp_path):
    import yaml

    from univg.config import Params

    edited = tmp_path / "params.yaml"
    edited.write_text("data:\n  seed: 7\n")
    result = runner.invoke(app, ["params", "--params", str(edited), "--defaults"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output) == Params().model_dump(by_alias=True, mode="json")


def test_bad_override_names_key_and_value(tmp_path):
    result = runner.invoke(app, ["params", "--params", str(tmp_path / "none.yaml"), "-S", "sft.tiny-cpu.learning_rate=-1"])
    assert result.exit_code == 1
    assert "'sft.tiny-cpu.learning_rate' = -1" in result.output
    assert "Traceback" not in result.output


def test_inspect_reports_problems_with_line_numbers(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = {"id": "a", "task": "diff", "images": ["x.png"], "question": "q", "target_image": 1,
            "box": [1, 2, 3, 4], "source": "t"}
    bad.write_text(json.dumps(good) + "\n{oops\n" + json.dumps({**good, "id": "b", "box": [5, 5, 1, 1]}) + "\n")
    result = runner.invoke(app, ["data", "inspect", str(bad)])
    assert result.exit_code == 2
    assert "malformed JSON" in result.output and "inverted" in result.output
    assert "image not found: x.png" in result.output


def test_missing_files_stop_with_a_message(tmp_path):
    result = runner.invoke(app, ["score", "--benchmark", "mig-synth", "--annotations", str(tmp_path / "a.jsonl"),
                                 "--predictions", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 1
    assert "no such file" in result.output
    result = runner.invoke(app, ["eval", "--model", "m"])
    assert result.exit_code == 1 and "missing --benchmark" in result.output
