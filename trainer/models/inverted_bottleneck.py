"""The inverted residual block with a linear bottleneck (MobileNetV2, Sandler et al., CVPR 2018)."""

from __future__ import annotations

import torch
from torch import nn

from trainer.models.residual import needs_projection

# The activations the block may use inside: the paper's ReLU6, or plain ReLU.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu6": nn.ReLU6, "relu": nn.ReLU}


class InvertedBottleneck(nn.Module):
    """1x1 expand to `expansion` x Cin, BN, act; depthwise k x k (stride), BN, act; 1x1
    project to Cout, BN, and no activation after the projection (the linear bottleneck).

    The input is added back when the block keeps the shape (stride 1, Cin == Cout), as the
    paper does; `identity` says whether it does. Parameters, with h = expansion * Cin:
    Cin*h + 2h + k*k*h + 2h + h*Cout + 2*Cout. The expansion is an integer >= 2 here: the
    paper drops the expanding conv at ratio 1, which would make the block a separable conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion: int,
        kernel: int = 3,
        stride: int = 1,
        act: str = "relu6",
    ) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"activation {act!r}: expected one of {', '.join(ACTIVATIONS)}")
        hidden = in_channels * expansion
        self.expand = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(
            hidden, hidden, kernel, stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act = ACTIVATIONS[act](inplace=True)
        self.identity = not needs_projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.expand(x)))
        y = self.act(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return x + y if self.identity else y
