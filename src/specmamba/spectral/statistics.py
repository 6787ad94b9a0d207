"""Statistics of the spectral audit: correlations, partial correlation, seeded bootstrap intervals.

The study (REFERENCE.md section 3) correlates each image's mean AVR with its boundary F1, per model,
pooled over models, and partially: both variables are replaced by their residuals after least squares
on a one-hot model indicator, which removes the between-model differences in level and keeps the
within-model association. Its p-value uses a t distribution with ``n - 2 - (g - 1)`` degrees of
freedom (``g`` groups, i.e. ``g - 1`` covariates besides the intercept).

Intervals are percentile bootstraps over images with a seeded generator, so the same inputs give the
same interval. Resampling is stratified by group where groups are given (each model keeps its count).

Non-finite pairs (an image whose AVR is undefined, an HD95 of an empty mask) are dropped first; a
statistic of fewer than 3 pairs, or of a constant variable, is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Correlation",
    "bootstrap_ci",
    "correlate",
    "partial_correlation",
    "pearson",
    "residualize",
    "spearman",
]

ArrayLike = Sequence[float] | np.ndarray


def _finite_pairs(x: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of the same length; got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if groups is None:
        return x[keep], y[keep], None
    g = np.asarray(groups)
    if g.shape != x.shape:
        raise ValueError(f"groups must have one entry per observation; got {g.shape} for {x.shape}")
    return x[keep], y[keep], g[keep]


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0


def _scipy_correlation(test: Callable[..., Any], x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """(statistic, two-sided p) of a scipy correlation test over the finite pairs; NaNs when undefined."""
    x, y, _ = _finite_pairs(x, y)
    if _degenerate(x, y):
        return float("nan"), float("nan")
    res = test(x, y)
    return float(res.statistic), float(res.pvalue)


def pearson(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Pearson (r, two-sided p) over the finite pairs; (nan, nan) when undefined."""
    return _scipy_correlation(stats.pearsonr, x, y)


def spearman(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Spearman rank (rho, two-sided p) over the finite pairs; (nan, nan) when undefined."""
    return _scipy_correlation(stats.spearmanr, x, y)


def residualize(v: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Residuals of ``v`` after least squares on a one-hot indicator of ``groups`` (no intercept needed)."""
    _, codes = np.unique(groups, return_inverse=True)
    design = np.eye(codes.max() + 1)[codes]  # (n, g) one-hot
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    return v - design @ coef


def partial_correlation(x: ArrayLike, y: ArrayLike, groups: ArrayLike) -> tuple[float, float]:
    """Correlation of x and y controlling for group membership: (r, two-sided p).

    r is the Pearson correlation of the residuals of x and y after least squares on one-hot groups;
    p comes from ``t = r sqrt(df / (1 - r^2))`` with ``df = n - 2 - (g - 1)``.
    """
    x, y, g = _finite_pairs(x, y, groups)
    n_groups = len(np.unique(g))
    df = len(x) - 2 - (n_groups - 1)
    if len(x) < 3 or df < 1:
        return float("nan"), float("nan")
    rx, ry = residualize(x, g), residualize(y, g)
    if np.allclose(rx, 0) or np.allclose(ry, 0):
        return float("nan"), float("nan")
    r = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1.0, 1.0))
    if abs(r) == 1.0:
        return r, 0.0
    t = r * np.sqrt(df / (1.0 - r * r))
    return r, float(2.0 * stats.t.sf(abs(t), df))


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` (arrays resampled jointly, by row).

    With ``groups``, rows are resampled within each group and ``statistic`` is called with the
    resampled groups as a keyword (``groups=...``). NaN replicates are ignored; (nan, nan) when
    fewer than half of them are finite or n_boot is 0.
    """
    data = [np.asarray(a, dtype=np.float64) for a in arrays]
    n = len(data[0])
    if n == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if groups is not None:
        g = np.asarray(groups)
        strata = [np.flatnonzero(g == value) for value in np.unique(g)]
    values = np.empty(n_boot)
    for i in range(n_boot):
        if groups is None:
            idx = rng.integers(0, n, n)
            values[i] = statistic(*(a[idx] for a in data))
        else:
            idx = np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])
            values[i] = statistic(*(a[idx] for a in data), groups=g[idx])
    finite = values[np.isfinite(values)]
    if len(finite) < n_boot / 2:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass
class Correlation:
    """Pearson and Spearman association of x and y over n finite pairs, with a bootstrap interval of r."""

    n: int
    pearson_r: float
    pearson_p: float
    pearson_ci_low: float
    pearson_ci_high: float
    spearman_r: float
    spearman_p: float


def correlate(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Correlation:
    """Plain correlations of x and y, or partial ones when ``groups`` is given.

    The partial Spearman coefficient is the partial correlation of the ranks.
    """
    x, y, g = _finite_pairs(x, y, groups)
    if g is None:
        r, p = pearson(x, y)
        rho, p_rho = spearman(x, y)
        ci = bootstrap_ci(lambda a, b: pearson(a, b)[0], x, y, n_boot=n_boot, seed=seed)
    else:
        r, p = partial_correlation(x, y, g)
        rho, p_rho = partial_correlation(stats.rankdata(x), stats.rankdata(y), g)

        def partial_r(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> float:
            return partial_correlation(a, b, groups)[0]

        ci = bootstrap_ci(partial_r, x, y, groups=g, n_boot=n_boot, seed=seed)
    return Correlation(len(x), r, p, ci[0], ci[1], rho, p_rho)
