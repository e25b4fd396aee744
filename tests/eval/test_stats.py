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


# ----------------------------------------------------------------------------- pinned by mutation testing
def _reference_interval(values, n, seed, confidence=0.95):
    """The documented method, written out: n resamples from one seeded generator, percentiles."""
    values = np.asarray(values, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values[picks].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def test_the_interval_is_the_documented_percentile_bootstrap():
    values = [0.1, 0.9, 0.4, 0.4, 1.0, 0.0, 0.7]
    assert bootstrap_ci(values, n=300, seed=5) == _reference_interval(values, 300, 5)
    assert bootstrap_ci(values, n=300, seed=5, confidence=0.8) == _reference_interval(values, 300, 5, 0.8)
    assert bootstrap_ci(values) == _reference_interval(values, 1000, 0)  # defaults: 1000 resamples, seed 0


def test_chunked_resampling_draws_the_same_stream(monkeypatch):
    import univg.eval.stats as stats

    values = [0.0, 1.0, 1.0, 0.0, 1.0]
    whole = bootstrap_ci(values, n=101, seed=2)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 12)  # two rows of five per chunk: 51 chunks
    assert bootstrap_ci(values, n=101, seed=2) == whole == _reference_interval(values, 101, 2)


def test_paired_bootstrap_takes_booleans_defaults_and_names_its_fields():
    a, b = [True, True, False, True], [False, True, False, False]
    result = paired_bootstrap(a, b)
    assert result == paired_bootstrap([1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0], n=1000, seed=0)
    assert result["delta"] == 0.5 and result["n"] == 4 and result["confidence"] == 0.95
    assert result["ci95"] == list(_reference_interval(np.array(a, float) - np.array(b, float), 1000, 0))
    empty = paired_bootstrap([], [], confidence=0.9)
    assert set(empty) == {"delta", "ci95", "n", "confidence", "p_le_0"} and empty["confidence"] == 0.9
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_stratified_interval_skips_empty_groups_keeps_single_ones_and_is_seeded():
    groups = {"a": [1.0, 0.0, 1.0], "b": [0.0], "c": []}
    low, high = stratified_bootstrap_mean_of_means(groups, n=200, seed=4)
    assert (low, high) == stratified_bootstrap_mean_of_means({"a": [1.0, 0.0, 1.0], "b": [0.0]}, n=200, seed=4)
    assert high <= 0.5  # group b (always 0) pulls the mean of means to at most (1 + 0) / 2
    assert stratified_bootstrap_mean_of_means(groups) == stratified_bootstrap_mean_of_means(groups, n=1000, seed=0)
    rng = np.random.default_rng(4)
    a_means = np.asarray(groups["a"])[rng.integers(0, 3, size=(200, 3))].mean(axis=1)
    b_means = np.asarray(groups["b"])[rng.integers(0, 1, size=(200, 1))].mean(axis=1)
    expected = np.percentile((a_means + b_means) / 2, [2.5, 97.5])
    assert (low, high) == (float(expected[0]), float(expected[1]))


IOUS = [0.13, 0.87, 0.42, 0.55, 0.91, 0.07, 0.66, 0.31, 0.78, 0.24]  # continuous: every n and seed moves the interval
OTHER = [0.5, 0.2, 0.9, 0.1, 0.35, 0.8, 0.6, 0.05, 0.45, 0.7]


def test_defaults_are_1000_resamples_and_seed_0_everywhere():
    assert bootstrap_ci(IOUS) == bootstrap_ci(IOUS, n=1000, seed=0) != bootstrap_ci(IOUS, n=1001, seed=0)
    assert paired_bootstrap(IOUS, OTHER) == paired_bootstrap(IOUS, OTHER, n=1000, seed=0)
    assert paired_bootstrap(IOUS, OTHER)["ci95"] != paired_bootstrap(IOUS, OTHER, n=1001)["ci95"]
    groups = {"a": IOUS[:5], "b": OTHER[:6]}
    default = stratified_bootstrap_mean_of_means(groups)
    assert default == stratified_bootstrap_mean_of_means(groups, n=1000, seed=0)
    assert default != stratified_bootstrap_mean_of_means(groups, n=1001, seed=0)
    assert default != stratified_bootstrap_mean_of_means(groups, n=1000, seed=1)


def test_p_le_0_counts_ties_as_not_better():
    assert paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])["p_le_0"] == 1.0  # every resampled delta is 0


def test_no_group_with_records_gives_nan():
    low, high = stratified_bootstrap_mean_of_means({"a": [], "b": []})
    assert np.isnan(low) and np.isnan(high)
