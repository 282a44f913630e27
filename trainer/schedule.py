"""Who sets the learning rate when: the base schedule every trial shares, unless a technique
owns the schedule, then the averaging phase.

Without a shared decay, a technique that brings its own schedule (one-cycle) would be
measured against a constant learning rate, and its gain would partly be "a decaying
schedule versus none". So every trial decays by the same rule; one-cycle replaces it.

A warm-up (`train.warmup_fraction`) belongs to the base schedule (`WARMUP_RULE`): ignored,
not refused, where one-cycle is on, so a search that switches one-cycle keeps one recipe for
both arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from trainer.spec import TrainSpec
from trainer.techniques.base import SLOT_AVERAGING, SLOT_SCHEDULE, Technique, owner

# "cosine": lr * (1 + cos(pi * t / T)) / 2 at optimiser step t of T, reaching zero after the
# last step (SGDR's cosine without restarts). "constant": the trial's lr throughout.
SCHEDULES = ("cosine", "constant")
MAX_WARMUP = 0.5  # the largest `train.warmup_fraction`
WARMUP_RULE = (
    "train.warmup_fraction warms up the base schedule (train.schedule); one_cycle, which warms "
    "up by its own pct_start, replaces that schedule whole, so the warm-up is ignored in trials "
    "where one_cycle is on (and refused in a space where one_cycle is always on)."
)


def warmup_steps(fraction: float, total_steps: int) -> int:
    """The steps of a warm-up over `fraction` of `total_steps`, rounded. At most half: the
    schedule keeps at least one step after it, and most of the run to decay over."""
    if not 0.0 <= fraction <= MAX_WARMUP:
        raise ValueError(f"warmup_fraction = {fraction!r}: expected a value in [0, {MAX_WARMUP}]")
    return round(fraction * total_steps)


def base_factor(schedule: str, t: int, total_steps: int, warmup: int) -> float:
    """The multiple of `lr` at optimiser step t (from 0) of `total_steps`.

    Warm-up (Goyal et al. 2017, from ~0): for t < `warmup`, (t + 1) / (warmup + 1): a
    constant increase per step that reaches `lr` at step `warmup`, where the schedule
    starts, without a first step at exactly 0. Then the schedule over the remaining steps.
    """
    if t < warmup:
        return (t + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    t, total_steps = t - warmup, total_steps - warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(t, total_steps) / total_steps))


def base_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup: int = 0
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A scheduler stepped once per optimiser step for `total_steps` steps, the first
    `warmup` of them warming up; None for "constant" without warm-up. The closed form, not
    `CosineAnnealingLR`'s recursion, so step t is exact."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule = {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if schedule == "constant" and warmup == 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: base_factor(schedule, t, total_steps, warmup)
    )


class Phases:
    """The two phases of a trial's learning rate (rule swa x one_cycle).

    The main phase runs the schedule slot's owner (one-cycle), else the trial's base
    schedule, over the steps before averaging begins; from `averaging_epoch` on, the
    averager (SWA) owns the learning rate. Without an averager the main phase is the trial.
    """

    def __init__(
        self,
        techniques: Sequence[Technique],
        hp: TrainSpec,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
    ) -> None:
        self.averager = owner(techniques, SLOT_AVERAGING)
        # The first epoch (0-based) of the averaging phase; the trial's epochs without one.
        self.averaging_epoch = (
            self.averager.averaging_start(hp.epochs) if self.averager else hp.epochs
        )
        self._schedule_owner = owner(techniques, SLOT_SCHEDULE)
        self._hp = hp
        self._optimizer = optimizer
        self._steps_per_epoch = steps_per_epoch

    def main_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The main phase's scheduler; None for a constant rate or a phase without steps."""
        steps = self.averaging_epoch * self._steps_per_epoch
        if steps == 0:
            return None
        if self._schedule_owner:  # it warms up by its own rule: train.warmup_fraction is ignored
            return self._schedule_owner.make_scheduler(self._optimizer, steps)
        warmup = warmup_steps(self._hp.warmup_fraction, steps)
        return base_scheduler(self._optimizer, self._hp.schedule, steps, warmup)

    def begin_averaging(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The averager takes over the learning rate. One-cycle cycles momentum; the
        averaging phase trains at the trial's momentum."""
        if self.averager is None:
            raise RuntimeError("begin_averaging: no technique averages weights in this trial")
        for group in self._optimizer.param_groups:
            group["momentum"] = self._hp.momentum
        steps = (self._hp.epochs - self.averaging_epoch) * self._steps_per_epoch
        return self.averager.averaging_scheduler(self._optimizer, steps)
