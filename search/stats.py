"""The statistics of a report, in one place: t-intervals over seeds, paired differences and
Holm's correction across the techniques compared.

Why t-intervals: a configuration is trained with a handful of seeds (3 by default), so the
normal approximation would understate the spread; Student's t with n - 1 degrees of freedom
is exact for normal noise. Why paired: seed s is the same initialisation and data order for
every configuration, so the per-seed difference cancels what the seed alone does.

Holm, as used here: the p-values of the m comparisons are Holm-adjusted (step-down, so the
family-wise error rate stays at alpha), and each comparison's interval is taken at the level
Holm tests it at, 1 - alpha / (m - rank + 1) for the rank of its p-value. A comparison is
"within noise" when its adjusted p-value is at least alpha: then its interval covers 0, or
Holm stopped at an earlier comparison that did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided confidence interval; low and high are NaN with one sample."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def covers(self, value: float) -> bool:
        return not (self.low > value or self.high < value)  # NaN bounds cover everything


def t_interval(values: Sequence[float], confidence: float = 1 - ALPHA) -> Interval:
    """Mean of `values` and its Student-t interval (n - 1 degrees of freedom)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, confidence)


def paired(
    treated: Mapping[int, float], reference: Mapping[int, float]
) -> tuple[list[int], list[float]]:
    """Per-seed differences treated - reference over the seeds both have, seeds sorted."""
    seeds = sorted(set(treated) & set(reference))
    return seeds, [treated[s] - reference[s] for s in seeds]


def t_test_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of a one-sample t-test of mean 0 (the paired t-test).

    All differences equal: the test is degenerate; p is 1 when they are 0, else 0.
    """
    x = np.asarray(differences, dtype=float)
    if len(x) < 2:
        return math.nan
    if np.all(x == x[0]):
        return 1.0 if x[0] == 0 else 0.0
    return float(stats.ttest_1samp(x, 0.0).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the given order: max over the smaller-or-equal ranks of
    (m - rank + 1) * p, capped at 1. NaN p-values (one seed) stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class Effect:
    """A configuration against its reference: the paired difference and Holm's verdict."""

    delta: Interval  # at Holm's level for this comparison's rank
    p: float  # paired t-test, unadjusted
    p_holm: float

    @property
    def within_noise(self) -> bool:
        return not self.p_holm < ALPHA  # NaN (one seed): nothing can be claimed


def effects(differences: Sequence[Sequence[float]], alpha: float = ALPHA) -> list[Effect]:
    """Holm-corrected paired effects of m comparisons, each given as per-seed differences."""
    p = [t_test_p(d) for d in differences]
    adjusted = holm(p)
    ranked = sorted((i for i in range(len(p)) if not math.isnan(p[i])), key=lambda i: p[i])
    rank = {i: r for r, i in enumerate(ranked)}
    m = len(ranked)
    out = []
    for i, d in enumerate(differences):
        level = 1 - alpha / (m - rank[i]) if i in rank else 1 - alpha
        out.append(Effect(t_interval(d, level), p[i], adjusted[i]))
    return out


def welch(
    with_: Sequence[float], without: Sequence[float], confidence: float = 1 - ALPHA
) -> Interval:
    """Difference of two independent means (with - without), Welch's t-interval: the
    marginal effect of a switch across a search's trials, whose groups are not paired."""
    a, b = np.asarray(with_, dtype=float), np.asarray(without, dtype=float)
    mean = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2 or (a.var() == 0 and b.var() == 0):
        return Interval(mean, math.nan, math.nan, len(a) + len(b), confidence)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return Interval(mean, float(ci.low), float(ci.high), len(a) + len(b), confidence)
