"""The base learning-rate schedule every trial shares, unless a technique owns the schedule.

Without a shared decay, a technique that brings its own schedule (one-cycle) would be
measured against a constant learning rate, and its gain would partly be "a decaying
schedule versus none". So every trial decays by the same rule; one-cycle replaces it.
"""

from __future__ import annotations

import math

import torch

# "cosine": lr * (1 + cos(pi * t / T)) / 2 at optimiser step t of T, reaching zero after the
# last step (SGDR's cosine without restarts). "constant": the trial's lr throughout.
SCHEDULES = ("cosine", "constant")


def base_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A scheduler stepped once per optimiser step for `total_steps` steps, or None for
    "constant". The closed form, not `CosineAnnealingLR`'s recursion, so step t is exact."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule = {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total_steps) / total_steps))
    )
