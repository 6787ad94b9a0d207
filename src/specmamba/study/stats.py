"""Statistics of a study: intervals over seeds and cases, paired signed-rank tests, p-value corrections.

**Interval over seeds and cases.** A study scores every (model, seed) run on the same cases, so a
model's figure is the (S, N) table ``v[s, i]`` (seed s, case i). Its point value is the grand mean
over the finite cells. Its 95% interval is a two-level percentile bootstrap: each replicate draws S
seeds with replacement, then N cases with replacement (the same case draw for every drawn seed,
because a case is one image scored by every seed), and takes the mean of the drawn cells. The
interval therefore widens both with seed-to-seed variation (training noise) and with case-to-case
variation (which images the split happened to hold). With one seed it is the plain case bootstrap.
The generator is seeded, so the same table gives the same interval.

**Wilcoxon signed-rank test** (two-sided), for two models scored on the same cases: the differences
``d = a - b``, zeros dropped (Wilcoxon's rule), ``|d|`` ranked with average ranks for ties, and
``T+`` the rank sum of the positive differences. With n <= 50 non-zero differences and no ties the
p-value is exact: ``2 min(P(T <= T+), P(T >= T+))`` under the null distribution of T (every sign
pattern equally likely, counted by a subset-sum recursion). Otherwise it is the normal
approximation ``z = (T+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48)`` (t: sizes of the tie
groups), without continuity correction. This is ``scipy.stats.wilcoxon``'s default computation
(``zero_method="wilcox"``, ``correction=False``) for data without zeros, and the study's tests check
it against scipy. The statistic reported is ``min(T+, T-)``, as scipy's.

**Multiple comparisons.** Every pair of models is one test per metric; the p-values of one metric are
corrected together: Holm's step-down (default; controls the family-wise error), Benjamini-Hochberg
(controls the false discovery rate) or Bonferroni.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "CORRECTIONS",
    "EXACT_MAX_N",
    "SignedRankResult",
    "adjust_pvalues",
    "bootstrap_interval",
    "signed_rank_test",
]

#: Largest number of non-zero differences for which the exact null distribution is used.
EXACT_MAX_N = 50
CORRECTIONS = ("holm", "bh", "bonferroni")


@dataclass(frozen=True)
class SignedRankResult:
    """One paired test: ``n`` non-zero differences, ``statistic`` min(T+, T-), two-sided ``p``,
    ``method`` exact or normal (NaNs and n = 0 when every difference is zero or non-finite)."""

    n: int
    statistic: float
    p: float
    method: str


def _exact_null_counts(n: int) -> np.ndarray:
    """counts[k] = number of subsets of {1..n} whose sum is k (the null distribution of T+ times 2^n)."""
    counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
    counts[0] = 1.0
    for rank in range(1, n + 1):  # each rank is in the positive set or not
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def signed_rank_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> SignedRankResult:
    """Two-sided Wilcoxon signed-rank test of paired values ``a`` and ``b`` (the module docstring).

    Pairs with a non-finite value are dropped, then pairs with a zero difference.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-D arrays of one length; got {a.shape} and {b.shape}")
    d = a - b
    d = d[np.isfinite(d) & (d != 0)]
    n = len(d)
    if n == 0:
        return SignedRankResult(0, math.nan, math.nan, "none")
    ranks = stats.rankdata(np.abs(d))  # average ranks for ties
    r_plus = float(ranks[d > 0].sum())
    r_minus = n * (n + 1) / 2 - r_plus
    _, tie_sizes = np.unique(np.abs(d), return_counts=True)
    ties = bool((tie_sizes > 1).any())
    if n <= EXACT_MAX_N and not ties:
        counts = _exact_null_counts(n)
        total = counts.sum()
        k = int(round(r_plus))
        p = 2.0 * min(counts[: k + 1].sum(), counts[k:].sum()) / total
        return SignedRankResult(n, min(r_plus, r_minus), float(min(p, 1.0)), "exact")
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - float((tie_sizes**3 - tie_sizes).sum()) / 48
    z = (r_plus - mean) / math.sqrt(var)
    return SignedRankResult(n, min(r_plus, r_minus), float(2 * stats.norm.sf(abs(z))), "normal")


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """``pvalues`` corrected for being tested together (NaNs stay NaN and do not count as tests).

    holm: the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)); bh: the i-th
    smallest becomes min over j >= i of min(1, m p_(j) / j); bonferroni: min(1, m p).
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r}: use one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return out.tolist()
    order = finite[np.argsort(p[finite], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    elif method == "bh":
        adjusted = np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1]
        adjusted = np.minimum(adjusted, 1.0)
    else:
        adjusted = np.minimum(1.0, m * ranked)
    out[order] = adjusted
    return out.tolist()


def bootstrap_interval(
    values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of an (S seeds, N cases) table: the grand mean over finite cells and its
    two-level percentile bootstrap interval (the module docstring). NaN cells (an undefined HD95) are
    left out of every mean; with ``n_boot`` 0 or a single finite cell the interval is (NaN, NaN)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"expected an (S seeds, N cases) table; got shape {v.shape}")
    finite = np.isfinite(v)
    if not finite.any():
        return math.nan, math.nan, math.nan
    mean = float(v[finite].mean())
    if n_boot <= 0 or finite.sum() < 2:
        return mean, math.nan, math.nan
    s, n = v.shape
    rng = np.random.default_rng(seed)
    filled = np.where(finite, v, 0.0)
    weight = finite.astype(np.float64)
    means = np.empty(n_boot)
    for k in range(n_boot):
        seeds = rng.integers(0, s, s)
        cases = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)  # (N,) draw counts
        seed_counts = np.bincount(seeds, minlength=s).astype(np.float64)  # (S,)
        cell = seed_counts[:, None] * cases[None, :]  # (S, N) times each cell was drawn
        total = (cell * weight).sum()
        means[k] = (cell * filled).sum() / total if total > 0 else np.nan
    means = means[np.isfinite(means)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)
