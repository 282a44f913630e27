"""Inverted bottlenecks (MobileNetV2, Sandler et al. 2018); the block is
trainer.models.inverted_bottleneck."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.models.inverted_bottleneck import ACTIVATIONS, InvertedBottleneck
from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class InvertedBottlenecks(Technique):
    """The depthwise stages' blocks become inverted bottlenecks: a 1x1 expansion by
    `expansion` in front of the depthwise conv, a linear 1x1 projection after it, and the
    input added back where the block keeps its shape.

    It needs `depthwise` (rules.py): the stages it builds in, and their kernel, are the
    depthwise ones. The paper's ratio is 6; tiny nets use 2-4, so the range is 2..6 and a
    space narrows it. ReLU6 is the paper's activation (kept for low-precision inference);
    plain ReLU is offered, fixed at ReLU6 unless a space searches it.
    """

    name = "inverted_bottleneck"
    kind = "architecture"
    summary = (
        "depthwise blocks become MobileNetV2 inverted bottlenecks (expand, dw, linear project)"
    )
    source = "Sandler et al., CVPR 2018, MobileNetV2"
    hypers = (
        Hyper("expansion", 6, low=2, high=6, integer=True, doc="hidden width / input channels"),
        Hyper(
            "activation",
            "relu6",
            choices=tuple(ACTIVATIONS),
            doc="activation after the expansion and the depthwise conv",
            searched=False,
        ),
    )

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(
            arch, expansion=self.params["expansion"], bottleneck_act=self.params["activation"]
        )

    def absent_from(self, model: Net) -> str | None:
        if any(isinstance(m, InvertedBottleneck) for m in model.modules()):
            return None
        return "no depthwise stage to build inverted bottlenecks in"
