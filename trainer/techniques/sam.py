"""SAM, sharpness-aware minimisation (Foret et al. 2021), and adaptive SAM (Kwon et al. 2021)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from trainer.techniques.base import Hyper, LossFn, Technique

# Keeps the perturbation finite when the gradient is zero (as in the common reference code).
_NORM_EPS = 1e-12


def sam_perturbation(
    params: Sequence[torch.Tensor], rho: float, adaptive: bool
) -> list[torch.Tensor]:
    """The ascent step e for each parameter, from the gradients currently in `.grad`.

    SAM: e = rho * g / ||g||, with one L2 norm over all parameters.
    Adaptive SAM, T_w = |w|: e = rho * w^2 * g / ||w * g||. Kwon et al. add a small eta to
    |w|; we follow the common form without it, so parameters at exactly zero stay put.
    """
    grads = [p.grad for p in params]
    scaled = [p.abs() * g if adaptive else g for p, g in zip(params, grads, strict=True)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled]))
    scale = rho / (norm + _NORM_EPS)
    return [(p * p * g if adaptive else g) * scale for p, g in zip(params, grads, strict=True)]


@contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Run forward passes without changing any normalisation layer's running statistics.

    Buffers are saved and copied back, which also keeps `num_batches_tracked` (a momentum of
    zero would not) and covers cumulative averaging (`momentum=None`).
    """
    saved = [
        (buffer, buffer.clone())
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._NormBase)
        for buffer in module.buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def sam_step(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    rho: float,
    adaptive: bool,
) -> torch.Tensor:
    """One SAM update on one batch; returns the loss at the unperturbed weights (detached).

    Both passes see the same batch. The second pass, at w + e, leaves BatchNorm running
    statistics alone; the base optimiser then steps from w with the gradient taken at w + e.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), targets)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    with torch.no_grad():
        originals = [p.detach().clone() for p in params]
        for p, e in zip(params, sam_perturbation(params, rho, adaptive), strict=True):
            p.add_(e)
    optimizer.zero_grad(set_to_none=True)
    with frozen_norm_stats(model):
        loss_fn(model(x), targets).backward()
    with torch.no_grad():
        # Copy back rather than subtract e: restores w bit for bit.
        for p, original in zip(params, originals, strict=True):
            p.copy_(original)
    optimizer.step()
    return loss.detach()


class SAM(Technique):
    """Owns the optimisation step: ascend to the worst nearby point, descend with its gradient.

    About twice the compute of a plain step; the scheduler still steps once per update.
    With `adaptive=True` the perturbation is scaled by |w|, and rho is ~10x larger, so
    rho's range and default depend on `adaptive` (searched under its own Optuna name).
    """

    name = "sam"
    kind = "training"
    summary = "sharpness-aware minimisation (two passes per step)"
    source = "Foret et al., ICLR 2021; adaptive: Kwon et al., ICML 2021"
    hypers = (
        Hyper("adaptive", False, choices=(False, True), doc="adaptive SAM: e scaled by |w|"),
        Hyper.conditional(
            "rho",
            "adaptive",
            (
                (False, Hyper("rho", 0.05, low=0.01, high=0.2, log=True)),
                (True, Hyper("rho", 0.5, low=0.1, high=2.0, log=True)),
            ),
            doc="radius: SAM 0.05 in Foret et al.; adaptive ~10x larger, 0.5 in Kwon et al.",
        ),
    )

    def step(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        x: torch.Tensor,
        targets: torch.Tensor,
        optimizer: torch.optim.Optimizer,
    ) -> torch.Tensor:
        return sam_step(
            model, loss_fn, x, targets, optimizer, self.params["rho"], self.params["adaptive"]
        )
