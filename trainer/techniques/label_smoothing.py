"""Label smoothing (Szegedy et al. 2016)."""

from __future__ import annotations

import torch

from trainer.techniques.base import Hyper, Technique


def smooth_labels(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 - eps) * targets + eps / K over the K classes of the last dimension.

    The standard eps / K form (as `CrossEntropyLoss(label_smoothing=eps)`), not the
    eps / (K - 1) off-target form some code uses. Works on any soft targets that sum to 1,
    so the result still sums to 1.
    """
    return targets * (1.0 - eps) + eps / targets.shape[-1]


class LabelSmoothing(Technique):
    """Smooth the soft targets in the batch slot, exactly once.

    The loss never smooths: it is plain cross-entropy against the soft targets this slot
    produced. Runs last among batch transforms so mixed targets are smoothed once.
    """

    name = "label_smoothing"
    kind = "training"
    summary = "soft targets (1 - eps) * onehot + eps / K"
    source = "Szegedy et al., CVPR 2016"
    hypers = (
        Hyper(
            "eps",
            0.1,
            low=0.05,
            high=0.3,
            doc="mass spread over classes: 0.1 in the paper, 0.2 in fast CIFAR recipes; "
            "below 0.05 'on' is nearly 'off'",
        ),
    )
    batch_order = 30

    def batch(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, smooth_labels(targets, self.params["eps"])
