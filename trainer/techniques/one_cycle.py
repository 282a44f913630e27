"""One-cycle learning rate schedule (Smith & Topin 2018)."""

from __future__ import annotations

import math

import torch

from trainer.techniques.base import Hyper, Technique

# Start at max_lr / 25 and end at max_lr / (25 * 1e4): PyTorch's defaults, from the paper.
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4


class OneCycle(Technique):
    """Owns the schedule, replacing the trial's base schedule (`train.schedule`): cosine
    warm-up to `max_lr` over `pct_start` of the steps, then cosine annealing to nearly zero;
    stepped once per optimiser step.

    Momentum is cycled inversely (0.95 -> 0.85 -> 0.95, PyTorch's defaults and the paper's
    recommendation), overriding the trial's fixed momentum. With SWA on, `total_steps` is
    the number of steps before averaging begins (see rules.py), and momentum returns to the
    trial's value when averaging begins.
    """

    name = "one_cycle"
    kind = "training"
    summary = "one-cycle learning rate (warm-up then cosine annealing)"
    source = "Smith & Topin 2018, Super-convergence"
    hypers = (
        Hyper("max_lr", 0.1, low=0.01, high=1.0, log=True, doc="peak learning rate"),
        Hyper("pct_start", 0.3, low=0.1, high=0.5, doc="fraction of steps spent warming up"),
    )

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.params["max_lr"],
            total_steps=total_steps,
            pct_start=_warmup_fraction(self.params["pct_start"], total_steps),
            anneal_strategy="cos",
            div_factor=DIV_FACTOR,
            final_div_factor=FINAL_DIV_FACTOR,
        )


def _warmup_fraction(pct_start: float, total_steps: int) -> float:
    """`pct_start`, except where `pct_start * total_steps` is exactly 1.

    `OneCycleLR` ends the warm-up at step `pct_start * total_steps - 1`; at exactly 0 the
    warm-up spans zero steps and its interpolation divides 0 by 0 (ZeroDivisionError). One
    ulp less puts step 0 at the start of the annealing phase, i.e. at `max_lr`: the value
    the warm-up would end on, and the limit of the schedule as the warm-up shrinks to nothing.
    """
    if pct_start * total_steps == 1.0:
        return math.nextafter(pct_start, 0.0)
    return pct_start
