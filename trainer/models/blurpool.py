"""BlurPool: anti-aliased downsampling (Zhang, ICML 2019, "Making CNNs shift-invariant again").

A fixed binomial low-pass filter applied per channel before subsampling, so a one-pixel shift
of the input changes the output much less than plain strided subsampling does. Written from
the paper: the reference code's licence is non-commercial.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Rows of Pascal's triangle: the binomial approximations of a Gaussian the paper uses.
_BINOMIAL: dict[int, tuple[float, ...]] = {
    2: (1.0, 1.0),
    3: (1.0, 2.0, 1.0),
    4: (1.0, 3.0, 3.0, 1.0),
    5: (1.0, 4.0, 6.0, 4.0, 1.0),
}


def binomial_filter(size: int) -> torch.Tensor:
    """The (size, size) outer product of binomial coefficients, normalised to sum 1."""
    if size not in _BINOMIAL:
        raise ValueError(
            f"blur filter size {size!r}: expected one of {', '.join(map(str, _BINOMIAL))}"
        )
    row = torch.tensor(_BINOMIAL[size])
    kernel = torch.outer(row, row)
    return kernel / kernel.sum()


class BlurPool2d(nn.Module):
    """Depthwise binomial blur with reflect padding, then subsampling by `stride`.

    The filter is a buffer, not a parameter: BlurPool adds FLOPs but no parameters. It is
    applied at every width, down to one channel; some libraries skip layers narrower than
    16 channels, which would switch it off everywhere in a small MNIST net.
    """

    def __init__(self, channels: int, size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        # Even sizes cannot be centred: pad one more pixel after than before, as the reference does.
        before, after = (size - 1) // 2, math.ceil((size - 1) / 2)
        self.padding = (before, after, before, after)
        self.register_buffer("filter", binomial_filter(size).repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode="reflect")
        return F.conv2d(x, self.filter, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, size={self.filter.shape[-1]}, stride={self.stride}"
