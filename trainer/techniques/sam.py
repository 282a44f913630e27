"""SAM, sharpness-aware minimisation (Foret et al. 2021), and adaptive SAM (Kwon et al. 2021)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from trainer.techniques.base import ForwardBackward, Hyper, StepMember, Technique

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
def frozen_norm_stats(*models: nn.Module) -> Iterator[None]:
    """Run forward passes without changing any normalisation layer's running statistics.

    Buffers are saved and copied back, which also keeps `num_batches_tracked` (a momentum of
    zero would not) and covers cumulative averaging (`momentum=None`).
    """
    saved = [
        (buffer, buffer.clone())
        for model in models
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


@dataclass(frozen=True)
class Ascent:
    """One member's part in a SAM step: its network, optimiser and radius."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    rho: float
    adaptive: bool


def sam_step(members: Sequence[Ascent], forward_backward: ForwardBackward) -> torch.Tensor:
    """One SAM update of every member on its batch; returns the losses at the unperturbed
    weights (detached, one per member).

    Both passes see the same batches. Each member ascends by its own gradient norm and
    radius (one norm over its own parameters: a norm over the group's would couple them).
    The second pass, at w + e, leaves BatchNorm running statistics alone; each base
    optimiser then steps from w with the gradient taken at w + e.
    """
    for m in members:
        m.optimizer.zero_grad(set_to_none=True)
    losses = forward_backward()
    ascended = []
    with torch.no_grad():
        for m in members:
            params = [
                p
                for group in m.optimizer.param_groups
                for p in group["params"]
                if p.grad is not None
            ]
            originals = [p.detach().clone() for p in params]
            for p, e in zip(params, sam_perturbation(params, m.rho, m.adaptive), strict=True):
                p.add_(e)
            ascended.append((params, originals))
    for m in members:
        m.optimizer.zero_grad(set_to_none=True)
    with frozen_norm_stats(*(m.model for m in members)):
        forward_backward()
    with torch.no_grad():
        # Copy back rather than subtract e: restores w bit for bit.
        for params, originals in ascended:
            for p, original in zip(params, originals, strict=True):
                p.copy_(original)
    for m in members:
        m.optimizer.step()
    return losses


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

    def step(self, group: Sequence[StepMember], forward_backward: ForwardBackward) -> torch.Tensor:
        return sam_step(
            [
                Ascent(
                    m.model, m.optimizer, m.technique.params["rho"], m.technique.params["adaptive"]
                )
                for m in group
            ],
            forward_backward,
        )
