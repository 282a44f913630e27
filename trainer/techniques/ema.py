"""Weight EMA: an exponential moving average of the weights (Polyak & Juditsky 1992), kept as
timm keeps it (`timm.utils.model_ema.ModelEmaV3`, updated by timm's train.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from trainer.techniques.base import Hyper, Technique, Value

# timm's decay warm-up (after @crowsonkb's code): 1 - (1 + s / gamma) ** -power after s
# updates; timm's defaults gamma = 1, power = 2/3 (decay 0.99 after 1,000 updates).
WARMUP_GAMMA = 1.0
WARMUP_POWER = 2 / 3


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay of update number `updates` (from 1), as timm's `ModelEmaV3.get_decay`:
    0 for the first, so the average starts as a copy of the weights after the first step;
    then `decay`, or with `warmup` the smaller of `decay` and timm's warm-up curve."""
    steps = updates - 1
    if steps <= 0:
        return 0.0
    if warmup:
        return min(decay, 1.0 - (1.0 + steps / WARMUP_GAMMA) ** -WARMUP_POWER)
    return decay


# The most of the final average that may still be the weights after the first step: past
# it, the "average" is mostly an untrained network. A CIFAR-10 pilot at decay 0.999 over
# 170 steps kept 84% of them and scored 18% where its trained network scored 55%.
MAX_FIRST_SHARE = 0.1


def first_share(decay: float, updates: int, warmup: bool) -> float:
    """The weight the average gives the copy taken at the first update, after `updates`
    updates: the product of every later update's decay."""
    if not warmup:
        return decay ** max(updates - 1, 0)
    share = 1.0
    for update in range(2, updates + 1):
        share *= ema_decay(decay, update, warmup)
        if share < 1e-12:  # timm's warm-up falls fast: 0.37 after the second update
            return 0.0
    return share


@torch.no_grad()
def ema_update(averaged: nn.Module, model: nn.Module, decay: float) -> None:
    """averaged = decay * averaged + (1 - decay) * model, for every floating-point tensor of
    the state dict: parameters and BatchNorm running statistics alike (timm's default,
    `exclude_buffers=False`); integer buffers (`num_batches_tracked`) are copied."""
    # lerp(a, b, 1) is exactly b, so decay 0 copies.
    lerped, targets = [], []
    for mine, theirs in zip(
        averaged.state_dict().values(), model.state_dict().values(), strict=True
    ):
        if mine.is_floating_point():
            lerped.append(mine)
            targets.append(theirs)
        else:
            mine.copy_(theirs)
    # Multi-tensor lerp, as timm does: a few kernel launches per step rather than one per
    # tensor (not measured here; a tiny network's step is a few dozen small kernels).
    torch._foreach_lerp_(lerped, targets, 1.0 - decay)


class EMA(Technique):
    """Average the weights after every optimiser step; the average is the model evaluated,
    measured and saved.

    BatchNorm running statistics are averaged with the weights, as timm does by default,
    so the average's statistics come from the same window of steps as its weights; it needs
    no re-estimation pass (SWA, which averages weights alone, does). The average starts as
    a copy of the weights after the first step (timm's decay of 0 at its first update).
    Per member of a fused group: each member averages its own network.

    The decay warm-up is timm's option (off by default, as in timm): with it the first
    weights stop dominating a short run at a high decay (0.9999 ** 2,000 = 0.82).
    """

    name = "ema"
    kind = "training"
    summary = "exponential moving average of the weights, updated every step"
    source = "Polyak & Juditsky 1992; as timm's ModelEmaV3"
    hypers = (
        Hyper(
            "decay",
            0.999,
            choices=(0.99, 0.995, 0.999, 0.9995, 0.9999),
            doc="weight of the average per step, ~1 - 1/(steps averaged): 0.999 in "
            "xvel/cifar10-tiniest (97.5K parameters), 0.9998-0.9999 in timm's ImageNet runs",
        ),
        Hyper(
            "warmup",
            False,
            choices=(False, True),
            searched=False,
            doc="timm's decay warm-up: min(decay, 1 - n ** (-2/3)) at update n",
        ),
    )

    def __init__(self, **params: Value) -> None:
        super().__init__(**params)
        self.averaged: nn.Module | None = None
        self.updates = 0

    def after_step(self, model: nn.Module) -> None:
        self.updates += 1
        if self.averaged is None:
            self.averaged = copy.deepcopy(model)  # then replaced whole: the first decay is 0
        decay = ema_decay(self.params["decay"], self.updates, self.params["warmup"])
        ema_update(self.averaged, model, decay)

    def too_short(self, steps: int) -> str | None:
        decay, warmup = self.params["decay"], self.params["warmup"]
        share = first_share(decay, steps, warmup)
        if share <= MAX_FIRST_SHARE:
            return None
        (choices,) = (h.choices for h in self.hypers if h.name == "decay")
        fits = [c for c in choices or () if first_share(float(c), steps, False) <= MAX_FIRST_SHARE]
        shorter = f"ema.decay {fits[-1]}, " if fits else ""
        return (
            f"ema: decay {decay} over {steps:,} optimiser steps leaves {share:.0%} of the "
            f"average on the weights after the first step (at most {MAX_FIRST_SHARE:.0%} "
            f"accepted); use ema.warmup: true, {shorter}or more steps"
        )

    def state_dict(self) -> dict[str, Any]:
        if self.averaged is None:
            return {}
        return {"averaged": self.averaged.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        if "averaged" in state:
            self.averaged = copy.deepcopy(model)
            self.averaged.load_state_dict(state["averaged"])
            self.updates = state["updates"]

    def finalize(
        self,
        model: nn.Module,
        clean_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    ) -> nn.Module:
        if self.averaged is None:
            raise RuntimeError("ema: finalize called before any optimiser step")
        return self.averaged
