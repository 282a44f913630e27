"""Mixup (Zhang et al., ICLR 2018)."""

from __future__ import annotations

import numpy as np
import torch

from trainer.techniques.base import Hyper, Technique


def mixup_batch(
    x: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each sample with sample `perm[i]`: lam * a + (1 - lam) * b, inputs and targets alike.

    Cross-entropy against the mixed soft targets equals the paper's
    lam * CE(y_i) + (1 - lam) * CE(y_j).
    """
    return lam * x + (1.0 - lam) * x[perm], lam * targets + (1.0 - lam) * targets[perm]


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), reproducible from `generator`.

    torch's Gamma/Beta samplers take no generator, so a seed is drawn from it for a NumPy
    generator; the run stays a deterministic function of the trial seed.
    """
    seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


class Mixup(Technique):
    """One lambda per batch and a random pairing by permutation, as in the paper.

    Not forced by the paper, and our choice: lambda is used as drawn (no max(lam, 1 - lam)
    folding). Runs after Cutout (holes are cut per image before mixing) and before label
    smoothing (mixed one-hots are smoothed once).
    """

    name = "mixup"
    kind = "training"
    summary = "convex combinations of sample pairs and their targets"
    source = "Zhang et al., ICLR 2018"
    hypers = (
        Hyper("alpha", 1.0, low=0.05, high=2.0, log=True, doc="Beta(alpha, alpha) parameter"),
    )
    batch_order = 20

    def batch(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = sample_lambda(self.params["alpha"], generator)
        perm = torch.randperm(len(x), generator=generator, device=generator.device)
        return mixup_batch(x, targets, lam, perm.to(x.device))
