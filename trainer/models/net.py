"""Builds the one network family every trial trains, from an `ArchSpec`.

A 3x3 stem, then stages of blocks (plain convolutions, depthwise-separable ones or inverted
bottlenecks, with or without residual shortcuts) that each end in a downsampling by 2, then
a flatten or global-average-pooling head. Every architecture technique is a field of the
spec, so a configuration is always the same code path.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from trainer.models.blurpool import BlurPool2d
from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.residual import Residual
from trainer.models.separable import SeparableConv2d
from trainer.models.squeeze_excite import SqueezeExcite
from trainer.spec import ArchSpec


class ConvBNAct(nn.Sequential):
    """k x k convolution without bias (BatchNorm supplies it), BatchNorm, ReLU.

    `out_act=False` leaves out the ReLU, for a residual block that activates after its add.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        out_act: bool = True,
    ):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            *([nn.ReLU(inplace=True)] if out_act else []),
        )


def stage_channels(arch: ArchSpec) -> list[int]:
    """Channel counts of the stem and of each stage, after width scaling and corrections."""
    base = [arch.stem_channels, *(s.channels for s in arch.stages)]
    delta = arch.channel_delta or (0,) * len(base)
    if len(delta) != len(base):
        raise ValueError(f"channel_delta has {len(delta)} entries, expected {len(base)}")
    return [max(1, round(c * arch.width) + d) for c, d in zip(base, delta, strict=True)]


def _block(arch: ArchSpec, stage: int, cin: int, cout: int, stride: int) -> nn.Module:
    """One block of stage `stage`: an inverted bottleneck in a depthwise stage when the
    expansion is set, else a separable conv there, else a plain conv. With `residual`, every
    block has one shortcut: a bottleneck's own identity, else a `Residual` around it."""
    depthwise = arch.separable_from is not None and stage >= arch.separable_from
    kernel = arch.stages[stage].kernel or (arch.kernel if depthwise else 3)
    if depthwise and arch.expansion is not None:
        block = InvertedBottleneck(cin, cout, arch.expansion, kernel, stride, arch.bottleneck_act)
        if arch.residual and not block.identity:  # linear bottleneck: no ReLU after the add
            return Residual(block, cin, cout, stride, act=False)
        return block
    out_act = not arch.residual  # post-activation: the ReLU moves after the add
    if depthwise:
        body: nn.Module = SeparableConv2d(cin, cout, kernel, stride, out_act)
    else:
        body = ConvBNAct(cin, cout, kernel, stride, out_act)
    return Residual(body, cin, cout, stride) if arch.residual else body


def _stage(arch: ArchSpec, index: int, cin: int, cout: int) -> nn.Sequential:
    """One stage. Downsampling follows Zhang (2019) when BlurPool is on:
    MaxPool(2, s2) -> MaxPool(2, s1) + Blur(s2); Conv(s2) -> Conv(s1) + ReLU + Blur(s2)."""
    spec = arch.stages[index]
    downsample = arch.downsamples(index)
    strided = downsample and arch.downsample == "stride" and arch.blur is None
    layers: list[nn.Module] = []
    for b in range(spec.blocks):
        last = b == spec.blocks - 1
        layers.append(
            _block(arch, index, cin if b == 0 else cout, cout, 2 if strided and last else 1)
        )
    if arch.se_ratio is not None:
        layers.append(SqueezeExcite(cout, arch.se_ratio))
    if downsample and not strided:
        if arch.downsample == "maxpool":
            layers.append(nn.MaxPool2d(2, stride=1 if arch.blur else 2))
        if arch.blur is not None:
            layers.append(BlurPool2d(cout, arch.blur, stride=2))
    return nn.Sequential(*layers)


class BuildError(ValueError):
    """A configuration whose network cannot be built as its spec says: a map too small for
    a layer, or an architecture technique that is on but builds nothing. A search records
    it as a failed trial."""


def _output_shape(blocks: nn.Sequential, in_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """Shape of one sample after `blocks`, found block by block on a meta-device copy
    (nothing computed; in eval mode, where BatchNorm's meta kernel is a third cheaper to
    trace); a block that cannot take its input map raises BuildError."""
    x = torch.empty(1, *in_shape, device="meta")
    for i, block in enumerate(copy.deepcopy(blocks).to("meta").eval()):
        where = "the stem" if i == 0 else f"stage {i - 1}"
        try:
            x = block(x)
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[0][:60]  # torch's own words, shortened
            raise BuildError(
                f"{where} cannot take its {x.shape[-2]}x{x.shape[-1]} input map ({reason}); "
                "use fewer downsampling stages, smaller filters or larger images"
            ) from None
    return tuple(x.shape[1:])


class Net(nn.Module):
    """The searched network: `features` then `head`."""

    def __init__(self, arch: ArchSpec, in_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        if arch.downsample not in ("maxpool", "stride"):
            raise ValueError(f"downsample = {arch.downsample!r}: expected 'maxpool' or 'stride'")
        if arch.head not in ("flatten", "gap"):
            raise ValueError(f"head = {arch.head!r}: expected 'flatten' or 'gap'")
        channels = stage_channels(arch)
        blocks: list[nn.Module] = [ConvBNAct(in_shape[0], channels[0], 3)]
        for i in range(len(arch.stages)):
            blocks.append(_stage(arch, i, channels[i], channels[i + 1]))
        self.features = nn.Sequential(*blocks)
        self.arch = arch
        c, h, w = _output_shape(self.features, in_shape)  # BuildError when it does not fit
        if arch.head == "gap":
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes)
            )
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
