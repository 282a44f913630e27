"""The noise-aware Pareto front: the strict front without the trials that only measurement
noise keeps on it.

A strict Pareto front keeps a trial that is 13.5 points less accurate than another at the
same budget because its latency came out 1% lower, inside the spread of the timing itself.
Here each objective carries a noise half-width per trial, and a trial *beats* another when it
is at least as good on every objective up to noise and better on one beyond noise (or
Pareto-dominates it outright). The front is the strict front's trials that nothing beats,
with one refinement: noise-tolerant "beats" is not transitive and can run in a cycle (a beats
b beats c beats a, each by trading small losses for one large gain), and a cycle must not
empty the front. So the front is the strict-front trials in a *source* strongly connected
component of the "beats" graph (one no trial outside it beats), the Schwartz set of social
choice: every trial that beats a kept trial is, through a chain, beaten by it.

Properties (tested): a non-empty subset of the strict front for any non-empty input; with
zero noise exactly the strict front (strict dominance is acyclic); independent of the order
of the trials; two trials equal within noise on everything never drop one another (ties keep
both), and identical trials share their fate.

Noise, per objective (see `latency_noise`, `seed_noise`): latency its IQR over the timed calls,
at least `LATENCY_FLOOR` of its median; accuracy the 95% t half-width of the mean over seeds
(0 with a single seed, which makes accuracy differences count in full); counted objectives
(parameters, budget) 0. Two trials' half-widths add in quadrature: the half-width of a
difference of two independent measurements.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse.csgraph import connected_components

from search.stats import t_interval

RULE = (
    "Noise-aware front: a trial leaves the strict Pareto front when another trial is at least "
    "as good on every objective up to noise and better on one beyond noise (trials that beat "
    "each other round a cycle stay). Noise: latency the IQR of its timed calls, at least 2% "
    "of its median; accuracy the 95% CI half-width of its mean over seeds (0 with one seed); "
    "parameters and budget 0; two trials' noise adds in quadrature."
)

# Why the IQR (not IQR / 2) and a 2% floor: re-timing a network moves its median by about its
# IQR. The four trials of tests/fixtures/legacy_study timed in their trial and again alone
# moved by 0.26-1.4x their in-trial IQR (0.26-0.70x the two IQRs in quadrature; half of each
# IQR would call two of the four different from themselves), and issue 19's trials 6 and 12,
# whose calls were steady, moved by 1.3% and 0.75%. The band covers run-to-run drift, not
# per-call jitter, which the median of 50-200 calls averages away.
LATENCY_FLOOR = 0.02
DIRECTIONS = {"maximize": 1.0, "minimize": -1.0}


def latency_noise(median_ms: float, iqr_ms: float | None) -> float:
    """Noise half-width of a latency: its IQR, floored at `LATENCY_FLOOR` of the median
    (studies of earlier versions stored no IQR: the floor alone)."""
    return max(iqr_ms or 0.0, LATENCY_FLOOR * median_ms)


def seed_noise(values: Sequence[float]) -> float:
    """Noise half-width of a mean over seeds: its 95% t half-width; 0 with one seed, where
    nothing is known about the seed noise and the value is taken as measured."""
    interval = t_interval(values)
    return 0.0 if interval.n == 1 else (interval.high - interval.low) / 2


def _oriented(values: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Values as an (n trials, n objectives) array with every objective turned to maximise."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(directions):
        raise ValueError(f"values of shape {x.shape}: expected (trials, {len(directions)})")
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown:
        raise ValueError(f"direction {unknown[0]!r}: expected one of {', '.join(DIRECTIONS)}")
    if not np.isfinite(x).all():
        raise ValueError("objective values must be finite")
    return x * np.array([DIRECTIONS[d] for d in directions])


def _dominates(x: np.ndarray) -> np.ndarray:
    """[b, a]: trial b Pareto-dominates trial a (x oriented to maximise)."""
    diff = x[:, None, :] - x[None, :, :]
    return (diff >= 0).all(-1) & (diff > 0).any(-1)


def strict_front(values: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Mask of the trials no other trial Pareto-dominates (equal trials all stay)."""
    return ~_dominates(_oriented(values, directions)).any(0)


def noise_front(values: ArrayLike, directions: Sequence[str], noise: ArrayLike) -> np.ndarray:
    """Mask of the trials on the noise-aware front (see the module docstring and `RULE`).

    `noise` has the shape of `values`: each trial's half-width per objective, finite, >= 0.
    """
    x = _oriented(values, directions)
    h = np.asarray(noise, dtype=float)
    if h.shape != x.shape:
        raise ValueError(f"noise of shape {h.shape}: expected {x.shape}, as the values")
    if not (np.isfinite(h) & (h >= 0)).all():
        raise ValueError("noise half-widths must be finite and >= 0")
    diff = x[:, None, :] - x[None, :, :]  # [b, a, objective]: how much better b is than a
    tol = np.hypot(h[:, None, :], h[None, :, :])
    beats = _dominates(x) | ((diff >= -tol).all(-1) & (diff > tol).any(-1))
    count, component = connected_components(beats, directed=True, connection="strong")
    b, a = np.nonzero(beats)
    beaten_from_outside = np.zeros(count, dtype=bool)
    beaten_from_outside[component[a][component[a] != component[b]]] = True
    return ~_dominates(x).any(0) & ~beaten_from_outside[component]
