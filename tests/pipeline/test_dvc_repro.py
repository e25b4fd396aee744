"""End to end: the real pipeline (`dvc repro`, every stage) on a tiny config in a fresh copy."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.pipeline.conftest import pipeline_env

CONTRACT_KEYS = {"acc@0.3", "acc@0.5", "acc@0.7", "miou", "n", "avg", "per_task"}


def run(repo, *args, timeout=900):
    result = subprocess.run(args, cwd=repo, env=pipeline_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def test_dvc_repro_runs_every_stage_and_writes_contract_metrics(tiny_repo):
    run(tiny_repo, "dvc", "repro")

    metrics = json.loads((tiny_repo / "metrics/eval.json").read_text())
    assert set(metrics) == {"base", "sft", "grpo"}
    n_test = sum(1 for _ in (tiny_repo / "data/mig-synth/test.jsonl").open())
    for name, entry in metrics.items():
        assert CONTRACT_KEYS <= set(entry), name
        assert entry["n"] == n_test
        assert 0.0 <= entry["acc@0.5"] <= 1.0
        assert "ci95" in entry
    promotion = json.loads((tiny_repo / "metrics/promotion.json").read_text())
    decision = promotion["decision"]
    assert decision["promote"] is promotion["promoted"] and decision["reason"]
    assert decision["reference"] == "base" and promotion["champion_before"] is None  # a fresh registry
    assert promotion["champion_after"] == (promotion["version"] if promotion["promoted"] else None)
    best = max(("sft", "grpo"), key=lambda m: (metrics[m]["acc@0.5"], m == "grpo"))
    assert promotion["candidate"] == best and best in promotion["chosen_because"]
    assert decision["candidate_acc"] == pytest.approx(metrics[best]["acc@0.5"])
    report = json.loads((tiny_repo / "data/validated/report.json").read_text())
    assert report["total"] == report["accepted"] + report["rejected"]

    # Nothing changed: a second repro runs no stage.
    again = run(tiny_repo, "dvc", "repro")
    assert "Running stage" not in again.stdout
