"""The box-prior baseline: correct arithmetic, and mig-synth cannot be answered without looking."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from univg.config import DataConfig
from univg.data.synth import box_prior_accuracy, generate_split
from univg.schema import write_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "box_prior.py"


def rec(task: str, box: list[int], target_image: int = 1) -> dict:
    return {"task": task, "box": box, "target_image": target_image}


def test_box_prior_arithmetic():
    train = [rec("a", [0, 0, 100, 100]), rec("a", [100, 100, 200, 200])]  # mean [50, 50, 150, 150]
    test = [rec("a", [50, 50, 150, 150]), rec("a", [600, 600, 700, 700]), rec("b", [60, 60, 150, 150], target_image=2)]
    result = box_prior_accuracy(train, test)
    assert result["mean_box"] == [50.0, 50.0, 150.0, 150.0]
    assert result["acc@0.5"] == pytest.approx(2 / 3)
    assert result["acc@0.5_indexed"] == pytest.approx(1 / 3)
    assert result["per_task"] == {"a": {"acc@0.5": 0.5, "n": 2}, "b": {"acc@0.5": 1.0, "n": 1}}
    with pytest.raises(ValueError):
        box_prior_accuracy([], test)


def test_mig_synth_defeats_the_box_prior(tmp_path):
    cfg = DataConfig(seed=11, train_per_task=20, test_per_task=30)
    train = generate_split(cfg, "train", tmp_path, progress=False)
    test = generate_split(cfg, "test", tmp_path, progress=False)
    result = box_prior_accuracy(train, test)
    assert result["n"] == 300
    assert result["acc@0.5"] < 0.10


def test_script_reads_given_files_and_exits_zero(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("box_prior_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = DataConfig(seed=12, train_per_task=3, test_per_task=3)
    write_jsonl(tmp_path / "train.jsonl", generate_split(cfg, "train", tmp_path, progress=False))
    write_jsonl(tmp_path / "test.jsonl", generate_split(cfg, "test", tmp_path, progress=False))
    assert module.main(["--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl")]) == 0
    assert "overall acc@0.5" in capsys.readouterr().out
