"""One-cycle learning rate schedule (Smith & Topin 2018)."""

from __future__ import annotations

import torch

from trainer.techniques.base import Hyper, Technique

# Start at max_lr / 25 and end at max_lr / (25 * 1e4): PyTorch's defaults, from the paper.
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4


class OneCycle(Technique):
    """Owns the schedule: cosine warm-up to `max_lr` over `pct_start` of the steps, then
    cosine annealing to nearly zero; stepped once per optimiser step.

    Momentum is cycled inversely (0.95 -> 0.85 -> 0.95, PyTorch's defaults and the paper's
    recommendation), overriding the trial's fixed momentum. With SWA on, `total_steps` is
    the number of steps before averaging begins (see rules.py).
    """

    name = "one_cycle"
    kind = "training"
    summary = "one-cycle learning rate (warm-up then cosine annealing)"
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
            pct_start=self.params["pct_start"],
            anneal_strategy="cos",
            div_factor=DIV_FACTOR,
            final_div_factor=FINAL_DIV_FACTOR,
        )
