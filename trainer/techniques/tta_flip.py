"""Flip test-time augmentation: predict from an image and its mirror (as airbench and Page's
"How to train your ResNet" evaluate)."""

from __future__ import annotations

import torch
from torch import nn

from trainer.techniques.base import Technique


class FlipTTA(nn.Module):
    """`net` evaluated on each image and on its left-right mirror; the mean of the two logits.

    Logits, not softmax probabilities, are averaged, as airbench's `infer_mirror` does: the
    argmax of the mean logit is the class of the normalised product of the two softmaxes,
    and it costs no exponentials. airbench makes two passes; here both views go through
    `net` as one batch of two, as a deployed net would run them (the same FLOPs, twice the
    net's; the latency of a batch of two).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain, mirrored = self.net(torch.cat([x, x.flip(-1)])).chunk(2)
        return 0.5 * plain + 0.5 * mirrored


class TTAFlip(Technique):
    """Evaluate the network as `FlipTTA`: validation accuracy, latency and FLOPs are those of
    both views, since the deployed net pays for them; training is untouched. Only where the
    space declares flips label-preserving (`data.flip_invariant`: CIFAR yes, digits no).
    The saved weights are the network's own."""

    name = "tta_flip"
    kind = "inference"
    summary = "test-time augmentation: mean logits of the image and its mirror"
    source = "Keller Jordan, airbench (arXiv 2404.00498); Page, How to train your ResNet"
    flips_images = True

    def inference(self, model: nn.Module) -> nn.Module:
        return FlipTTA(model)
