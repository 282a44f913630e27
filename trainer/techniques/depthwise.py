"""Depthwise-separable convolutions (MobileNet, Howard et al. 2017) in the later stages."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.separable import SeparableConv2d
from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec

FIRST_STAGE = Hyper(
    "first_stage",
    0,
    low=0,
    high=3,
    integer=True,
    doc="stages with index >= this use separable convs",
)


class Depthwise(Technique):
    """Replace the 3x3 convs of stages `first_stage` and later by separable convs.

    Parameters drop from k*k*Cin*Cout to about k*k*Cin + Cin*Cout, but depthwise convs are
    memory-bound: latency often rises, so measure it. `first_stage` ranges over the stages
    the model has (`hypers_for`): at or beyond the last stage nothing would be separable.
    The 5x5 kernel choice is ours: it costs little extra in the depthwise part. A stage that
    declares its own kernel (`model.stages[i].kernel`, 3, 5 or 7) overrides `kernel`; when
    every stage does, `kernel` would change nothing and is no hyperparameter of that model.
    With `inverted_bottleneck` on, the depthwise stages are built of inverted bottlenecks.
    """

    name = "depthwise"
    kind = "architecture"
    summary = "depthwise-separable convs from a given stage on"
    source = "Howard et al. 2017, MobileNets"
    hypers = (
        Hyper(
            "kernel",
            3,
            choices=(3, 5),
            doc="kernel size of the depthwise conv, where a stage declares none",
        ),
        FIRST_STAGE,
    )

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(
            arch, separable_from=self.params["first_stage"], kernel=self.params["kernel"]
        )

    def absent_from(self, model: Net) -> str | None:
        if any(isinstance(m, SeparableConv2d | InvertedBottleneck) for m in model.modules()):
            return None
        stages = len(model.arch.stages)
        return (
            f"first_stage = {self.params['first_stage']} builds no separable convolution: "
            f"the model has {stages} stage(s), numbered 0 to {stages - 1}"
        )

    @classmethod
    def hypers_for(cls, arch: ArchSpec) -> tuple[Hyper, ...]:
        last = min(FIRST_STAGE.high, len(arch.stages) - 1)  # type: ignore[type-var]
        bounded = replace(FIRST_STAGE, high=last, doc=f"{FIRST_STAGE.doc} (0..{last}: the stages)")
        own_kernels = all(s.kernel is not None for s in arch.stages)
        return tuple(
            bounded if h.name == "first_stage" else h
            for h in cls.hypers
            if not (h.name == "kernel" and own_kernels)
        )
