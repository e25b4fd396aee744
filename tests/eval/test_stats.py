"""Bootstrap intervals and the paired comparison the promotion gate reuses."""

from __future__ import annotations

import numpy as np
import pytest

from univg.eval.stats import bootstrap_ci, paired_bootstrap, stratified_bootstrap_mean_of_means


def hits(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(float)


def test_interval_contains_the_point_estimate_and_shrinks_with_n():
    widths = []
    for n in (50, 500, 5000):
        values = hits(n, 0.4, seed=n)
        lo, hi = bootstrap_ci(values, n=1000, seed=0)
        assert lo <= values.mean() <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] / widths[2] == pytest.approx(np.sqrt(10), rel=0.25)  # ~ 1/sqrt(n)


def test_interval_is_deterministic_for_a_seed_and_takes_other_stats():
    values = hits(200, 0.5, seed=1)
    assert bootstrap_ci(values, 500, seed=3) == bootstrap_ci(values, 500, seed=3)
    lo, hi = bootstrap_ci(np.arange(100.0), 500, seed=0, stat=np.median)
    assert lo < 49.5 < hi


def test_degenerate_inputs():
    assert bootstrap_ci([1.0], 100) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([], 100)))
    assert paired_bootstrap([], [], 100)["n"] == 0
    with pytest.raises(ValueError):
        paired_bootstrap([1, 0], [1], 100)


def test_paired_bootstrap_sign_and_interval():
    base = hits(400, 0.3, seed=5)
    better = np.maximum(base, hits(400, 0.3, seed=6))  # solves everything base solves, and more
    up = paired_bootstrap(better, base, n=1000, seed=0)
    down = paired_bootstrap(base, better, n=1000, seed=0)
    assert up["delta"] > 0 and up["ci95"][0] > 0 and up["p_le_0"] == 0.0
    assert down["delta"] == pytest.approx(-up["delta"]) and down["ci95"][1] < 0
    assert up["n"] == 400 and up["ci95"][0] <= up["delta"] <= up["ci95"][1]


def test_paired_interval_is_tighter_than_unpaired_for_correlated_models():
    a = hits(300, 0.5, seed=7)
    b = a.copy()
    b[:15] = 1 - b[:15]  # the two models disagree on 5% of records only
    paired = paired_bootstrap(a, b, n=1000, seed=0)
    lo, hi = bootstrap_ci(a, 1000, 0)
    assert paired["ci95"][1] - paired["ci95"][0] < (hi - lo) / 2  # pairing cancels the shared records


def test_stratified_avg_interval_brackets_the_mean_of_task_means():
    groups = {"a": hits(30, 0.9, 1), "b": hits(300, 0.2, 2)}
    lo, hi = stratified_bootstrap_mean_of_means(groups, 1000, 0)
    point = np.mean([g.mean() for g in groups.values()])
    assert lo <= point <= hi and hi - lo > 0


def test_large_inputs_are_chunked_with_the_same_result_shape():
    values = hits(50_000, 0.5, seed=9)
    lo, hi = bootstrap_ci(values, n=200, seed=0)
    assert lo < values.mean() < hi and hi - lo < 0.02
