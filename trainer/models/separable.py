"""Depthwise-separable convolution (MobileNet, Howard et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise kxk conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU.

    Both convs are bias-free since BatchNorm follows each. Parameters:
    k*k*Cin + 2*Cin + Cin*Cout + 2*Cout; at tiny widths the BatchNorm share is visible,
    so it is counted. `stride` applies to the depthwise conv. `out_act=False` leaves the
    output linear, for a residual block that activates after its add.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        out_act: bool = True,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel,
            stride=stride,
            padding=kernel // 2,
            groups=in_channels,
            bias=False,
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.out_act = out_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.depthwise(x)))
        x = self.bn2(self.pointwise(x))
        return self.act(x) if self.out_act else x
