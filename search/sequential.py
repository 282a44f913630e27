"""Sequential seeds for a design: add paired seeds only where a comparison is still open, and
look after every round without inflating the error rate.

The procedure (`PROCEDURE`), for m comparisons of a configuration against the reference, each
given as its per-seed paired differences:

- One look per seed count n from `min_seeds` to `max_seeds`. At look n the paired t statistic
  of the first n differences has a nominal two-sided level c_n = a * (n / max_seeds)^2: early
  looks, where Student's t with 2-3 degrees of freedom needs t > 10, get little of the error
  budget, the last looks most. Simulated over 3..8 seeds at alpha 0.05 / 7, a Pocock boundary
  (constant c_n) resolved an effect of 1.5 (2) sds of a paired difference 42% (74%) of the
  time, n^2 54% (84%) at about the same mean seeds, n^3 57% (86%) but with 0.1-0.2 more seeds
  on large effects, and a single look at 8 seeds 68% (93%) with all 8 seeds always.
- The constant a for an overall level alpha' is calibrated by simulating the null: the looks'
  t statistics are scale-free under normal noise, so P(some look crosses) is a function of the
  plan alone, computed once per plan from `CALIBRATION_SIMS` null sequences (a fixed RNG seed,
  so boundaries are reproducible) and raised by two Monte Carlo standard errors so that the
  simulation error makes the test conservative. This is what makes it valid at n = 3: the usual
  group-sequential boundaries assume a known variance (normal statistics).
- A comparison's sequential p-value is that null probability at its smallest p_n / (n/max)^2
  so far: valid whenever the study stops (the seeds a comparison never gets only remove looks).
- Across comparisons, Holm's step-down on those p-values (closed testing with Bonferroni
  tests, as Maurer & Bretz 2013 do for group-sequential designs), so the family-wise error is
  at most alpha. With `min_effect`, a comparison has two hypotheses, "no difference" and
  "|difference| >= min_effect", of which at most one can be true; it hands its share of alpha
  on only when both are rejected.
- Verdicts are read off repeated confidence intervals (Jennison & Turnbull): mean +- q_n * se,
  q_n the t quantile of c_n at the comparison's level, the largest its own p is held to given
  the others (alpha / the number of open comparisons, for an open one). "higher"/"lower": the
  interval of some look excludes 0; "negligible": it lies inside (-min_effect, +min_effect).
  So an interval shown agrees with its verdict; as with any Holm procedure the intervals are
  not simultaneous, the verdicts are what the error rate covers. A comparison is resolved from
  the first look that decides it and gets no more seeds.

Why not an anytime-valid confidence sequence: those built for bounded differences (accuracy
differences lie in [-1, 1]) are as wide as the range over n at n <= 10, so nothing resolves;
the sub-Gaussian ones need the noise known. With the number of looks fixed in advance a
group-sequential design spends the error budget only where a look happens.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from search.stats import ALPHA, Interval

PROCEDURE = (
    "group-sequential paired t-tests, one look per added seed, nominal level at look n "
    "proportional to n^2 and calibrated by simulation for Student's t; Holm's step-down across "
    "the comparisons (closed testing); verdicts from repeated confidence intervals"
)
SHAPE = 2  # nominal level at look n proportional to n ** SHAPE
CALIBRATION_SIMS = 2**19  # null sequences per plan: ~2% Monte Carlo error at a level of 0.005
CALIBRATION_SEED = 19
MAX_SEEDS_LIMIT = 64  # the calibration simulates sequences this long at most
POWER = 0.8  # what `seeds_needed` aims for
SEEDS_NEEDED_CAP = 100


@dataclass(frozen=True)
class Plan:
    """How many paired seeds a comparison may get, the family-wise level, and the smallest
    effect worth resolving (in the units of the differences; None: only "is there one")."""

    min_seeds: int = 3
    max_seeds: int = 8
    alpha: float = ALPHA
    min_effect: float | None = None

    def __post_init__(self) -> None:
        if not 2 <= self.min_seeds <= self.max_seeds <= MAX_SEEDS_LIMIT:
            raise ValueError(
                f"seeds {self.min_seeds}..{self.max_seeds}: expected "
                f"2 <= min seeds <= max seeds <= {MAX_SEEDS_LIMIT}"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha {self.alpha}: expected a level between 0 and 1")
        if self.min_effect is not None and not 0 < self.min_effect < math.inf:
            raise ValueError(f"min effect {self.min_effect}: expected a positive number")


@dataclass(frozen=True)
class Verdict:
    """One comparison after the latest round."""

    n: int  # paired seeds it has
    interval: Interval  # repeated CI at `level`, of the look that decided it (else the latest)
    level: float  # what its p had to meet, given the others (Holm: alpha / open ones, if open)
    p: float  # sequential p-value of "no difference", before the multiplicity adjustment
    p_adjusted: float  # Holm-adjusted (closed test): resolved by sign when <= alpha
    sign: int  # +1 / -1 when the interval excludes 0, else 0
    negligible: bool  # the interval lies inside (-min_effect, +min_effect)
    seeds_needed: int | None  # open only: seeds for POWER to resolve it if the estimates hold

    @property
    def resolved(self) -> bool:
        return self.sign != 0 or self.negligible

    @property
    def outcome(self) -> str:
        sign = {1: "higher", -1: "lower"}.get(self.sign, "")
        if self.negligible:
            return f"{sign}, below the min effect" if sign else "negligible"
        return sign or "open"


@dataclass(frozen=True)
class Round:
    """Who trains one more paired seed: the reference whenever any comparison does."""

    reference: bool
    comparisons: tuple[int, ...]


class _Boundary:
    """The null distribution of a plan's look statistic, the running minimum over the looks of
    p_n / w_n (w_n = (n / max_seeds)^SHAPE): a conservative CDF (`p`) and its inverse
    (`nominal`)."""

    def __init__(self, min_seeds: int, max_seeds: int):
        self.min_seeds = min_seeds
        self.weights = (np.arange(1, max_seeds + 1) / max_seeds) ** SHAPE  # index n - 1
        self.exact = min_seeds == max_seeds  # one look: the p-value itself
        if self.exact:
            return
        rng = np.random.default_rng(CALIBRATION_SEED)
        chunks = []
        for size in np.diff(np.r_[0 : CALIBRATION_SIMS : 2**16, CALIBRATION_SIMS]):
            mean, se, df = _looks(
                rng.standard_normal((size, 1, max_seeds)),
                np.full((size, 1), max_seeds),
                min_seeds,
                max_seeds,
            )
            chunks.append(self.statistic(_two_sided(np.abs(mean), se, df))[:, 0, -1])
        self.null = np.sort(np.concatenate(chunks))
        f = np.arange(CALIBRATION_SIMS + 1) / CALIBRATION_SIMS
        self.upper = np.minimum(1.0, f + 2 * np.sqrt(f * (1 - f) / CALIBRATION_SIMS) + 1 / f.size)

    def statistic(self, p_looks: np.ndarray) -> np.ndarray:
        """Running minimum of p_n / w_n over the looks (the last axis, from min_seeds)."""
        w = self.weights[self.min_seeds - 1 :][: p_looks.shape[-1]]
        return np.minimum.accumulate(p_looks / w, axis=-1)

    def p(self, statistic: np.ndarray) -> np.ndarray:
        """P(the statistic is this small under the null), Monte Carlo error on the safe side."""
        if self.exact:
            return np.minimum(1.0, statistic)
        return self.upper[np.searchsorted(self.null, statistic, side="right")]

    def nominal(self, level: float) -> float:
        """About the largest statistic whose p is at most `level`: a in c_n = a * w_n."""
        if self.exact:
            return level
        k = int(np.searchsorted(self.upper, level, side="right"))  # p <= level below null[k-1]
        return float(self.null[min(k, self.null.size) - 1]) if k else 0.0

    def quantile(self, level: float, n: np.ndarray) -> np.ndarray:
        """q_n: the two-sided t critical value at look n (n - 1 degrees of freedom) for an
        overall `level`; looks past the plan's last take the last look's nominal level."""
        c = self.nominal(level) * self.weights[np.minimum(n, self.weights.size) - 1]
        return -special.stdtrit(n - 1, np.minimum(c, 1.0) / 2)


@functools.lru_cache(maxsize=16)
def _boundary(min_seeds: int, max_seeds: int) -> _Boundary:
    return _Boundary(min_seeds, max_seeds)


def _looks(d: np.ndarray, n: np.ndarray, first: int, last: int) -> tuple[np.ndarray, ...]:
    """Mean, standard error and degrees of freedom of the first k differences for the looks
    k = first..last, as arrays (..., last - first + 1), mean and se NaN where k exceeds the
    comparison's n. d: (..., comparisons, seeds >= last), values past n ignored. Differences
    are shifted by the first one so that equal values give a standard error of exactly 0."""
    k = np.arange(1, d.shape[-1] + 1)
    present = k <= n[..., None]
    x = np.where(present, d - d[..., :1], 0.0)
    total, squares = np.cumsum(x, -1), np.cumsum(x * x, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.maximum(squares - total**2 / k, 0.0) / (k - 1) / k)
    mean = total / k + d[..., :1]
    looks = slice(first - 1, last)
    valid = present[..., looks]
    return (
        np.where(valid, mean[..., looks], np.nan),
        np.where(valid, se[..., looks], np.nan),
        k[looks] - 1,
    )


def _two_sided(distance: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Nominal two-sided t p-value of a mean `distance` standard errors inside its null
    (negative: outside, p capped at 1); 1 where there is no look, or 0 / 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2 * special.stdtr(df, -distance / se)
    return np.where(np.isnan(p), 1.0, np.minimum(p, 1.0))


def _holm(p: np.ndarray, fully: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed testing with Bonferroni tests, shortcut: each comparison's level and the adjusted
    p of its hypothesis `p`, arrays (studies, m). `fully` is the p at which a comparison is
    done with all its hypotheses (with one hypothesis, Holm exactly): the adversarial
    intersection for comparison i adds the s - 1 others least done, so its level is alpha / s
    for the largest s at which those are not all done at alpha / s."""
    m = p.shape[1]
    s = np.arange(2, m + 1)
    level, adjusted = np.empty_like(p), np.empty_like(p)
    for i in range(m):
        others = -np.sort(-np.delete(fully, i, axis=1), axis=1)  # least done first
        level[:, i] = alpha / np.max(np.where(others > alpha / s, s, 1), axis=1, initial=1)
        worst = np.max(s * np.minimum(p[:, i, None], others), axis=1, initial=0.0)
        adjusted[:, i] = np.minimum(1.0, np.maximum(p[:, i], worst))
    return level, adjusted


@dataclass(frozen=True)
class _Evaluation:
    """Every comparison of every study after a round, as arrays (studies, m)."""

    level: np.ndarray
    p: np.ndarray
    p_adjusted: np.ndarray
    sign: np.ndarray
    negligible: np.ndarray
    decided_at: np.ndarray  # the look that decided it, else its seed count

    @property
    def resolved(self) -> np.ndarray:
        return (self.sign != 0) | self.negligible


def _evaluate(d: np.ndarray, n: np.ndarray, plan: Plan) -> _Evaluation:
    """The procedure on d: (studies, m, max_seeds) differences, n: (studies, m) seed counts."""
    boundary = _boundary(plan.min_seeds, plan.max_seeds)
    mean, se, df = _looks(d, n, plan.min_seeds, plan.max_seeds)
    nulls = [_two_sided(np.abs(mean), se, df)]
    if plan.min_effect is not None:
        nulls.append(_two_sided(plan.min_effect - np.abs(mean), se, df))
    running = [boundary.p(boundary.statistic(p)) for p in nulls]  # p so far, per look
    final = [r[..., -1] for r in running]
    level, adjusted = _holm(final[0], np.maximum.reduce(final), plan.alpha)
    hits = [r <= level[..., None] for r in running]
    decided = np.logical_or.reduce(hits).any(-1)
    look = np.logical_or.reduce(hits).argmax(-1)[..., None]  # the first deciding look
    at = [np.take_along_axis(h, look, -1)[..., 0] for h in hits]
    sign = np.where(at[0], np.sign(np.take_along_axis(mean, look, -1)[..., 0]), 0).astype(int)
    negligible = at[1] if len(at) > 1 else np.zeros_like(decided)
    decided_at = np.where(decided, plan.min_seeds + look[..., 0], n)
    return _Evaluation(level, final[0], adjusted, sign, negligible, decided_at)


def sequential_verdicts(differences: Sequence[Sequence[float]], plan: Plan) -> list[Verdict]:
    """The verdict on each comparison, given its per-seed paired differences (treated -
    reference, seeds in the order trained; at most `plan.max_seeds` each)."""
    m = len(differences)
    d = np.zeros((1, m, plan.max_seeds))
    n = np.zeros((1, m), dtype=int)
    for i, x in enumerate(differences):
        if len(x) > plan.max_seeds:
            raise ValueError(
                f"{len(x)} seeds for one comparison: the plan allows at most {plan.max_seeds}"
            )
        if not np.isfinite(x).all():
            raise ValueError("differences must be finite")
        d[0, i, : len(x)], n[0, i] = x, len(x)
    ev = _evaluate(d, n, plan)
    boundary = _boundary(plan.min_seeds, plan.max_seeds)
    verdicts = []
    for i, x in enumerate(differences):
        level = float(ev.level[0, i])
        decided = np.asarray(x[: int(ev.decided_at[0, i])], dtype=float)
        resolved = bool(ev.resolved[0, i])
        verdicts.append(
            Verdict(
                n=len(x),
                interval=_interval(decided, level, boundary),
                level=level,
                p=float(ev.p[0, i]),
                p_adjusted=float(ev.p_adjusted[0, i]),
                sign=int(ev.sign[0, i]),
                negligible=bool(ev.negligible[0, i]),
                seeds_needed=None if resolved else _seeds_needed(decided, level, plan),
            )
        )
    return verdicts


def _interval(x: np.ndarray, level: float, boundary: _Boundary) -> Interval:
    """The repeated confidence interval of the look at len(x) seeds."""
    n = len(x)
    if n < 2:
        mean = float(x.mean()) if n else math.nan
        return Interval(mean, math.nan, math.nan, n, 1 - level)
    half = float(boundary.quantile(level, np.array(n)) * x.std(ddof=1) / math.sqrt(n))
    mean = float(x.mean())
    return Interval(mean, mean - half, mean + half, n, 1 - level)


def _seeds_needed(x: np.ndarray, level: float, plan: Plan) -> int | None:
    """The fewest seeds at which a look would resolve the comparison with probability POWER
    if its observed mean and sd were the truth (noncentral t), at this plan's boundary; None
    with fewer than 2 seeds, no spread, or more than SEEDS_NEEDED_CAP needed."""
    if len(x) < 2 or x.std(ddof=1) == 0:
        return None
    n = np.arange(len(x) + 1, SEEDS_NEEDED_CAP + 1)
    q = _boundary(plan.min_seeds, plan.max_seeds).quantile(level, n)
    mean, sd = abs(float(x.mean())), float(x.std(ddof=1))
    power = stats.nct.sf(q, n - 1, np.sqrt(n) * mean / sd)
    if plan.min_effect is not None and mean < plan.min_effect:
        power = np.maximum(
            power, stats.nct.sf(q, n - 1, np.sqrt(n) * (plan.min_effect - mean) / sd)
        )
    enough = np.flatnonzero(power >= POWER)
    return int(n[enough[0]]) if enough.size else None


def next_round(verdicts: Sequence[Verdict], plan: Plan) -> Round:
    """One more paired seed for every open comparison below the maximum, and for the
    reference whenever any comparison gets one."""
    grow = tuple(i for i, v in enumerate(verdicts) if not v.resolved and v.n < plan.max_seeds)
    return Round(reference=bool(grow), comparisons=grow)


@dataclass(frozen=True)
class Simulation:
    """Simulated studies run through the procedure round by round."""

    studies: int
    false_rate: float  # share of studies with any false verdict, at any round
    resolved: np.ndarray  # per comparison, share resolved by the end
    early: np.ndarray  # per comparison, share resolved with fewer than max_seeds
    seeds: np.ndarray  # per comparison, mean seeds trained
    trainings: float  # mean trainings per study, the reference's included


def simulate(
    plan: Plan,
    effects: Sequence[float],
    *,
    studies: int = 2000,
    noise: float = 0.01,
    seed_shift: float = 0.01,
    rng_seed: int = 0,
) -> Simulation:
    """Run the procedure on simulated studies: per seed, the reference's accuracy is 0.85 plus
    a shift common to every configuration trained with that seed (sd `seed_shift`) plus its
    own noise (sd `noise`); a configuration's also has its true effect. The differences are
    taken from these accuracies, so comparisons are correlated through the reference, as in a
    real design. A verdict is false when its sign is not the effect's (0 included) or it calls
    negligible an effect of at least min_effect."""
    effect = np.asarray(effects, dtype=float)
    rng = np.random.default_rng(rng_seed)
    shape = (studies, 1 + effect.size, plan.max_seeds)
    accuracy = 0.85 + rng.normal(0, seed_shift, (studies, 1, plan.max_seeds))
    accuracy = accuracy + rng.normal(0, noise, shape) + np.r_[0.0, effect][:, None]
    d = accuracy[:, 1:] - accuracy[:, :1]
    n = np.full((studies, effect.size), plan.min_seeds)
    false = np.zeros(studies, dtype=bool)
    large = np.abs(effect) >= (plan.min_effect or math.inf)
    while True:
        ev = _evaluate(d, n, plan)
        wrong = ((ev.sign != 0) & (ev.sign != np.sign(effect))) | (ev.negligible & large)
        false |= wrong.any(1)
        grow = ~ev.resolved & (n < plan.max_seeds)
        if not grow.any():
            break
        n = n + grow
    return Simulation(
        studies=studies,
        false_rate=float(false.mean()),
        resolved=ev.resolved.mean(0),
        early=(ev.resolved & (ev.decided_at < plan.max_seeds)).mean(0),
        seeds=n.mean(0),
        trainings=float((n.sum(1) + n.max(1)).mean()),
    )
