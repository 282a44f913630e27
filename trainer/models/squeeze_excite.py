"""Squeeze-and-Excitation (Hu et al., CVPR 2018): channel gates computed from global context."""

from __future__ import annotations

import torch
from torch import nn


def se_hidden_width(channels: int, ratio: float) -> int:
    """Hidden width of the gate: `max(1, round(channels * ratio))`.

    Python's `round` (half to even), and no rounding up to a multiple of 8: at C=16 that
    would add hundreds of parameters, a fifth of a 1.5K-parameter model. At least one unit,
    so the gate exists at any ratio.
    """
    return max(1, round(channels * ratio))


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 conv (C->h) -> ReLU -> 1x1 conv (h->C) -> sigmoid -> scale.

    Parameters: 2*C*h + h + C, with h = `se_hidden_width(C, ratio)`.
    """

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = se_hidden_width(channels, ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()
