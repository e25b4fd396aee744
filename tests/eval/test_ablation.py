"""The ablation table (univg.eval.ablation): pooled accuracy, its interval, seeds, and the paired difference."""

from __future__ import annotations

import pytest

from univg.eval.ablation import markdown_table, summarize_grid


def run(setting, seed, hits):
    return {"setting": setting, "seed": seed, "hits": {f"r{i}": float(h) for i, h in enumerate(hits)}}


def test_settings_pool_their_seeds_and_compare_paired_with_the_baseline():
    n = 200
    runs = [run("exp", 0, [1] * 150 + [0] * 50), run("exp", 1, [1] * 130 + [0] * 70),
            run("none", 0, [1] * 60 + [0] * 140), run("none", 1, [1] * 60 + [0] * 140)]
    summary = summarize_grid(runs, baseline="none", n_bootstrap=500, seed=3)
    exp, none = summary["rows"]
    assert summary["records"] == n and exp["setting"] == "exp"
    assert exp["acc"] == pytest.approx(0.7) and exp["seeds"] == {"0": 0.75, "1": 0.65}
    assert exp["seed_sd"] == pytest.approx(0.0707, abs=1e-3) and exp["seed_range"] == [0.65, 0.75]
    assert exp["ci95"][0] < 0.7 < exp["ci95"][1]
    assert exp["vs_baseline"]["delta"] == pytest.approx(0.4) and not exp["vs_baseline"]["within_noise"]
    assert "vs_baseline" not in none and none["seed_sd"] == 0.0
    assert summarize_grid(runs, "none", 500, 3) == summary  # the same draws for the same seed
    table = markdown_table(summary, "weighting")
    assert "| exp | 0.700 |" in table and "+0.400" in table and "200 test records" in table


def test_a_difference_inside_the_noise_is_said_so():
    same = [run("a", 0, [1, 0] * 50), run("b", 0, [0, 1] * 50)]
    row = summarize_grid(same, baseline="b", n_bootstrap=300)["rows"][0]
    assert row["vs_baseline"]["within_noise"] and "(noise)" in markdown_table(summarize_grid(same, "b", 300))


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="no runs"):
        summarize_grid([])
