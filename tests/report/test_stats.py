"""The report's statistics against scipy.stats on the same per-query values."""

import numpy as np
import pytest
from scipy import stats

from rankopt.report import bootstrap_ci, paired_bootstrap_ci, randomization_test


def test_bootstrap_interval_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    values = rng.beta(2, 5, size=300)
    ours = bootstrap_ci(values, n_resamples=20000, seed=1)
    theirs = stats.bootstrap(
        (values,), np.mean, method="percentile", n_resamples=20000, random_state=2
    ).confidence_interval
    width = theirs.high - theirs.low
    assert abs(ours[0] - theirs.low) < 0.05 * width and abs(ours[1] - theirs.high) < 0.05 * width
    # the normal approximation of the mean's interval, a third independent reference
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert ours[0] == pytest.approx(values.mean() - 1.96 * se, abs=0.1 * width)


def test_nan_queries_are_left_out_like_the_metric_mean():
    values = np.array([0.2, np.nan, 0.4, 0.6, np.nan, 0.8])
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values[~np.isnan(values)], seed=3)
    with pytest.raises(ValueError, match="no query has a value"):
        bootstrap_ci([np.nan, np.nan])


def test_paired_interval_agrees_with_scipy_paired_bootstrap():
    rng = np.random.default_rng(4)
    a = rng.random(250)
    b = a + rng.normal(0.02, 0.1, size=250)
    ours = paired_bootstrap_ci(a, b, n_resamples=20000, seed=5)
    theirs = stats.bootstrap(
        (a, b), lambda x, y: np.mean(y - x), paired=True, method="percentile", n_resamples=20000, random_state=6
    ).confidence_interval
    width = theirs.high - theirs.low
    assert abs(ours[0] - theirs.low) < 0.05 * width and abs(ours[1] - theirs.high) < 0.05 * width


def test_randomization_test_is_exact_for_few_queries_and_equals_scipy():
    rng = np.random.default_rng(7)
    a, b = rng.random(10), rng.random(10) + 0.15
    ours = randomization_test(a, b, n_resamples=2**10)
    theirs = stats.permutation_test(
        (a, b), lambda x, y: np.mean(y - x), permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    ).pvalue
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_randomization_test_monte_carlo_agrees_with_scipy():
    rng = np.random.default_rng(8)
    a = rng.random(60)
    b = a + rng.normal(0.03, 0.12, size=60)
    ours = randomization_test(a, b, n_resamples=20000, seed=9)
    theirs = stats.permutation_test(
        (a, b),
        lambda x, y: np.mean(y - x),
        permutation_type="samples",
        n_resamples=20000,
        alternative="two-sided",
        random_state=10,
    ).pvalue
    assert ours == pytest.approx(theirs, abs=0.015)
    assert 0 < ours <= 1


def test_identical_runs_have_p_one_and_a_zero_interval():
    a = np.linspace(0, 1, 50)
    assert randomization_test(a, a.copy()) == 1.0
    assert paired_bootstrap_ci(a, a.copy()) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same queries"):
        randomization_test(a, a[:-1])
