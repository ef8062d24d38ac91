"""Confidence over queries: bootstrap intervals of a mean, and paired tests of a difference.

Every statistic resamples *queries* (users, ID samples): a run's metric is a mean over them, and two
runs on the same queries are compared query by query. Seeded, so a report is reproducible.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_ci", "randomization_test"]


def _finite(values, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one value per query; got shape {v.shape}")
    v = v[~np.isnan(v)]
    if len(v) == 0:
        raise ValueError(f"{name}: no query has a value (all NaN or empty)")
    return v


def bootstrap_ci(values, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over queries (NaN queries, which have no relevant
    item, are left out as in the metric's own mean)."""
    v = _finite(values)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 256):  # blocks bound the (resamples × queries) index matrix
        stop = min(start + 256, n_resamples)
        means[start:stop] = v[rng.integers(0, len(v), size=(stop - start, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _paired(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two arrays over the same queries; got shapes {a.shape} and {b.shape}")
    both = ~(np.isnan(a) | np.isnan(b))
    if not both.any():
        raise ValueError("no query has a value in both runs")
    return b[both] - a[both]


def paired_bootstrap_ci(a, b, level: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of mean(b − a) over the queries both runs score, resampling queries."""
    return bootstrap_ci(_paired(a, b), level, n_resamples, seed)


def randomization_test(a, b, n_resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomisation (sign-flip) test of mean(b − a) = 0: under the
    null each query's two values are exchangeable, so the sign of each difference is a coin flip.
    Exact (every sign pattern) when 2^n <= n_resamples; else Monte Carlo with the observed value
    counted among the resamples, so p is never 0."""
    d = _paired(a, b)
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    n = len(d)
    if 2**n <= n_resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float((np.abs(signs @ d / n) >= observed - tol).mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 256):
        k = min(256, n_resamples - start)
        signs = rng.choice((-1.0, 1.0), size=(k, n))
        hits += int((np.abs(signs @ d / n) >= observed - tol).sum())
    return float((hits + 1) / (n_resamples + 1))
