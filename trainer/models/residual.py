"""Residual shortcuts (He et al., CVPR 2016, "Deep residual learning for image recognition")."""

from __future__ import annotations

import torch
from torch import nn


class Projection(nn.Sequential):
    """The shortcut where a block changes the shape: 1x1 conv (stride `stride`, no bias) + BN.

    He et al.'s option B. Parameters: Cin*Cout + 2*Cout, counted against the budget like any
    other layer (at 1.5K parameters a 12->16 projection is 224 of them).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )


def needs_projection(in_channels: int, out_channels: int, stride: int) -> bool:
    """An identity shortcut fits only a block that keeps channels and resolution."""
    return stride != 1 or in_channels != out_channels


class Residual(nn.Module):
    """y = act(F(x) + S(x)): `body` is F, S the identity or a `Projection` when F changes shape.

    Post-activation, as in He et al. 2016: the body ends in BatchNorm (its last activation
    left out) and the ReLU follows the add. `act=False` leaves the sum linear, for a body
    that must stay linear (an inverted bottleneck's projection, Sandler et al. 2018).
    """

    def __init__(
        self, body: nn.Module, in_channels: int, out_channels: int, stride: int, act: bool = True
    ) -> None:
        super().__init__()
        self.body = body
        self.shortcut: nn.Module = (
            Projection(in_channels, out_channels, stride)
            if needs_projection(in_channels, out_channels, stride)
            else nn.Identity()
        )
        self.act: nn.Module = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))
