"""The study's statistics against scipy on fixed numbers (and Holm / Bonferroni against hand sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from specmamba.study.stats import adjust_pvalues, bootstrap_interval, signed_rank_test

RNG = np.random.default_rng(20261202)


@pytest.mark.parametrize("n", [5, 12, 30, 50])
def test_signed_rank_exact_equals_scipy(n):
    a = RNG.normal(size=n)
    b = a + RNG.normal(0.3, 1.0, size=n)
    ours = signed_rank_test(a, b)
    ref = stats.wilcoxon(a, b, method="exact")
    assert ours.method == "exact"
    assert ours.statistic == ref.statistic
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_signed_rank_with_ties_and_zeros_equals_scipy_normal_approximation():
    a = np.round(RNG.normal(size=40), 1)
    b = np.round(RNG.normal(0.2, 1.0, size=40), 1)
    a[:3] = b[:3]  # three zero differences, dropped by Wilcoxon's rule
    d = a - b
    ours = signed_rank_test(a, b)
    ref = stats.wilcoxon(d[d != 0], method="asymptotic", correction=False)
    assert ours.method == "normal" and ours.n == int((d != 0).sum()) <= 37
    assert ours.statistic == ref.statistic
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_signed_rank_large_sample_equals_scipy_default():
    a, b = RNG.normal(size=80), RNG.normal(0.2, 1.0, size=80)
    ours, ref = signed_rank_test(a, b), stats.wilcoxon(a, b)
    assert ours.method == "normal"
    assert (ours.statistic, ours.p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)


def test_signed_rank_of_identical_values_is_undefined():
    result = signed_rank_test([0.5, 0.7], [0.5, 0.7])
    assert result.n == 0 and math.isnan(result.p)


def test_benjamini_hochberg_equals_scipy():
    p = [0.01, 0.04, 0.03, 0.2, 0.001, 0.5, 0.049]
    assert adjust_pvalues(p, "bh") == pytest.approx(stats.false_discovery_control(p), rel=1e-12)


def test_holm_and_bonferroni_by_hand_and_nan_is_not_a_test():
    p = [0.01, 0.04, 0.03, 0.2, math.nan, 0.001]
    # sorted 0.001, 0.01, 0.03, 0.04, 0.2 (m = 5): 5x, 4x, 3x, 2x, 1x, then running maximum
    holm = adjust_pvalues(p, "holm")
    assert holm[:4] + holm[5:] == pytest.approx([0.04, 0.09, 0.09, 0.2, 0.005])
    assert math.isnan(holm[4])
    bonf = adjust_pvalues(p, "bonferroni")
    assert bonf[:4] + bonf[5:] == pytest.approx([0.05, 0.2, 0.15, 1.0, 0.005])


def test_bootstrap_interval_of_one_seed_matches_the_normal_interval_of_the_mean():
    """With one seed it is the case bootstrap; for 400 cases the percentile interval is close to
    mean +- 1.96 s / sqrt(n) (CLT); 4000 replicates put its ends within ~0.01 s of that."""
    v = RNG.normal(size=(1, 400))
    mean, low, high = bootstrap_interval(v, n_boot=4000, seed=0)
    half = 1.96 * v.std(ddof=1) / 20
    assert mean == pytest.approx(v.mean())
    assert low == pytest.approx(v.mean() - half, abs=0.012)
    assert high == pytest.approx(v.mean() + half, abs=0.012)


def test_bootstrap_interval_widens_with_seed_spread_and_is_seeded():
    cases = RNG.normal(0.8, 0.05, size=200)
    same = np.stack([cases, cases, cases])
    spread = np.stack([cases - 0.05, cases, cases + 0.05])
    _, lo_a, hi_a = bootstrap_interval(same, n_boot=1000, seed=1)
    _, lo_b, hi_b = bootstrap_interval(spread, n_boot=1000, seed=1)
    assert hi_b - lo_b > 2 * (hi_a - lo_a)
    assert bootstrap_interval(spread, n_boot=1000, seed=1) == (
        bootstrap_interval(spread, n_boot=1000, seed=1)
    )


def test_bootstrap_interval_leaves_out_undefined_cells():
    v = np.array([[0.5, np.nan, 0.7], [0.6, np.nan, 0.8]])
    mean, low, high = bootstrap_interval(v, n_boot=200)
    assert mean == pytest.approx(0.65)
    assert 0.5 <= low <= mean <= high <= 0.8
