"""Correlations, partial correlation and bootstrap intervals of the audit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from specmamba.spectral.statistics import bootstrap_ci, correlate, partial_correlation, pearson, spearman


def grouped_sample(seed: int = 0, n: int = 60):
    """Three groups whose levels differ a lot, with a modest within-group association."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(["a", "b", "c"], n // 3)
    level = {"a": 0.0, "b": 5.0, "c": -3.0}
    base = np.array([level[g] for g in groups])
    x = base + rng.normal(size=n)
    y = -2 * base + 0.5 * (x - base) + rng.normal(size=n)
    return x, y, groups


def test_partial_correlation_equals_the_least_squares_residual_computation():
    x, y, groups = grouped_sample()
    design = np.stack([(groups == g).astype(float) for g in ("a", "b", "c")], axis=1)
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    expected_r = np.corrcoef(rx, ry)[0, 1]
    df = len(x) - 2 - 2
    t = expected_r * math.sqrt(df / (1 - expected_r**2))
    expected_p = 2 * stats.t.sf(abs(t), df)
    r, p = partial_correlation(x, y, groups)
    assert r == pytest.approx(expected_r, rel=1e-12)
    assert p == pytest.approx(expected_p, rel=1e-9)
    # the between-group levels dominate the pooled correlation, not the partial one
    assert pearson(x, y)[0] < -0.5 < 0 < r


def test_partial_correlation_with_one_group_is_pearson():
    x, y, _ = grouped_sample(1)
    r, p = partial_correlation(x, y, np.zeros(len(x)))
    assert (r, p) == pytest.approx(stats.pearsonr(x, y), rel=1e-9)


def test_pearson_and_spearman_match_scipy_and_drop_non_finite_pairs():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=40), rng.normal(size=40)
    x_nan = np.append(x, [np.nan, 1.0])
    y_nan = np.append(y, [2.0, np.inf])
    assert pearson(x_nan, y_nan) == pytest.approx(tuple(stats.pearsonr(x, y)))
    assert spearman(x_nan, y_nan) == pytest.approx(tuple(stats.spearmanr(x, y)))


def test_undefined_correlations_are_nan():
    assert all(math.isnan(v) for v in pearson([1, 2], [3, 4]))
    assert all(math.isnan(v) for v in pearson([1, 1, 1, 1], [1, 2, 3, 4]))
    assert all(math.isnan(v) for v in partial_correlation([1, 2, 3], [3, 1, 2], ["a", "b", "c"]))


def test_bootstrap_is_seeded_and_covers_the_estimate():
    x, y, groups = grouped_sample(3, n=90)
    ci = bootstrap_ci(np.mean, x, n_boot=500, seed=7)
    assert ci == bootstrap_ci(np.mean, x, n_boot=500, seed=7)
    assert ci != bootstrap_ci(np.mean, x, n_boot=500, seed=8)
    assert ci[0] < x.mean() < ci[1]
    corr = correlate(x, y, groups=groups, n_boot=300, seed=0)
    assert corr.pearson_ci_low < corr.pearson_r < corr.pearson_ci_high
    assert corr.n == 90


def test_stratified_bootstrap_keeps_group_sizes():
    groups = np.array(["a"] * 5 + ["b"] * 15)
    seen = []

    def record(values, groups):
        seen.append((np.sum(groups == "a"), np.sum(groups == "b")))
        return float(values.mean())

    bootstrap_ci(record, np.arange(20.0), groups=groups, n_boot=20, seed=0)
    assert set(seen) == {(5, 15)}


def test_bootstrap_without_replicates_gives_no_interval():
    assert all(math.isnan(v) for v in bootstrap_ci(np.mean, [1.0, 2.0], n_boot=0))
