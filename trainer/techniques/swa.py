"""SWA, stochastic weight averaging (Izmailov et al., UAI 2018)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from trainer.techniques.base import Hyper, Technique, Value

# Our choice (the paper does not force it): the learning rate is annealed to the SWA rate
# over the first tenth of the averaging phase's optimiser steps, then held constant.
ANNEAL_FRACTION = 0.1


def recompute_bn(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Re-estimate BatchNorm running statistics as an equal-weight average over `batches`.

    Averaged weights do not match any model's running statistics; without this, accuracy
    collapses. Use clean (un-augmented, un-mixed) training batches, like test inputs.
    """
    update_bn(batches, model, device=next(model.parameters()).device)


class SWA(Technique):
    """Average the weights at the end of each epoch from `start` of training on.

    SWA owns the learning rate during the averaging phase (SWALR, cosine anneal to `lr`,
    counted in optimiser steps since the loop steps every scheduler per optimiser step);
    the trial's base schedule (or one-cycle) runs over the steps before it.
    The evaluated model is the averaged one with recomputed BatchNorm statistics.
    """

    name = "swa"
    kind = "training"
    summary = "stochastic weight averaging over the last epochs"
    source = "Izmailov et al., UAI 2018"
    hypers = (
        Hyper("start", 0.75, low=0.5, high=0.95, doc="fraction of epochs before averaging"),
        Hyper("lr", 0.02, low=0.001, high=0.5, log=True, doc="SWA learning rate"),
    )

    def __init__(self, **params: Value) -> None:
        super().__init__(**params)
        self.averaged: AveragedModel | None = None

    def averaging_start(self, epochs: int) -> int:
        # At least one averaged epoch even when start * epochs rounds to the end.
        return min(epochs - 1, math.floor(self.params["start"] * epochs))

    def averaging_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        return SWALR(
            optimizer,
            swa_lr=self.params["lr"],
            anneal_epochs=max(1, round(ANNEAL_FRACTION * total_steps)),
            anneal_strategy="cos",
        )

    def after_epoch(self, model: nn.Module) -> None:
        if self.averaged is None:
            self.averaged = AveragedModel(model)
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        # The averaged weights and how many models they average (AveragedModel's buffer).
        return {} if self.averaged is None else {"averaged": self.averaged.state_dict()}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        if "averaged" in state:
            self.averaged = AveragedModel(model)
            self.averaged.load_state_dict(state["averaged"])

    def finalize(
        self,
        model: nn.Module,
        clean_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    ) -> nn.Module:
        if self.averaged is None:
            raise RuntimeError("swa: finalize called before any averaged epoch")
        averaged = self.averaged.module
        recompute_bn(averaged, clean_batches())
        return averaged
