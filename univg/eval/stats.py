"""Bootstrap statistics for evaluation: confidence intervals and paired model comparisons.

All resampling is vectorised with numpy (one (n_resamples, n) index matrix, no Python loop over
resamples) and seeded, so the same inputs always give the same interval. The promotion gate
reuses `paired_bootstrap` to decide whether a candidate beats the champion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

# Resample matrices are built in chunks so memory stays flat for large benchmarks
# (4,295 MIG-Bench records x 10,000 resamples would otherwise be a 340 MB int64 matrix).
_CHUNK_CELLS = 4_000_000


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(samples, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _resampled_stats(
    values: np.ndarray, n_resamples: int, rng: np.random.Generator, stat: Callable[..., np.ndarray]
) -> np.ndarray:
    """`stat` of `n_resamples` bootstrap resamples of `values` (rows of an index matrix)."""
    size = len(values)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(size, 1))
    out = []
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        picks = rng.integers(0, size, size=(rows, size))
        out.append(np.asarray(stat(values[picks], axis=1), dtype=float))
    return np.concatenate(out)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    stat: Callable[..., np.ndarray] = np.mean,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat(values)`.

    `stat` must accept `axis=` (np.mean, np.median, ...). An empty input gives (nan, nan); a single
    value gives a zero-width interval at that value.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    return _percentile_interval(_resampled_stats(data, n, rng, stat), confidence)


def stratified_bootstrap_mean_of_means(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Interval of the unweighted mean of per-group means (the benchmark's `avg`).

    Each group is resampled on its own: task sizes are fixed by the benchmark's design, so a
    resample must not move records between tasks.
    """
    arrays = [np.asarray(v, dtype=float) for v in groups.values() if len(v) > 0]
    if not arrays:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    per_group = np.stack([_resampled_stats(a, n, rng, np.mean) for a in arrays])
    return _percentile_interval(per_group.mean(axis=0), confidence)


def paired_bootstrap(
    a_hits: Sequence[float] | np.ndarray,
    b_hits: Sequence[float] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, object]:
    """Paired bootstrap of mean(a) - mean(b) over the same records (a and b aligned by record).

    Name a comparison "a-b": `paired_bootstrap(sft_hits, base_hits)` is "sft-base", positive when
    SFT is better. Returns {"delta", "ci95": [lo, hi], "n", "confidence", "p_le_0"}, where
    `p_le_0` is the share of resamples whose delta is <= 0 (a one-sided bootstrap p-value for
    "a beats b"). The interval is at `confidence` (0.95 by default, hence the key name).
    """
    a = np.asarray(a_hits, dtype=float)
    b = np.asarray(b_hits, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        return {"delta": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0,
                "confidence": confidence, "p_le_0": float("nan")}
    diff = a - b
    rng = np.random.default_rng(seed)
    deltas = _resampled_stats(diff, n, rng, np.mean)
    lo, hi = _percentile_interval(deltas, confidence)
    return {
        "delta": float(diff.mean()),
        "ci95": [lo, hi],
        "n": int(a.size),
        "confidence": confidence,
        "p_le_0": float(np.mean(deltas <= 0)),
    }
