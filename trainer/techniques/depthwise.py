"""Depthwise-separable convolutions (MobileNet, Howard et al. 2017) in the later stages."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.spec import ArchSpec


class Depthwise(Technique):
    """Replace the 3x3 convs of stages `first_stage` and later by separable convs.

    Parameters drop from k*k*Cin*Cout to about k*k*Cin + Cin*Cout, but depthwise convs are
    memory-bound: latency often rises, so measure it. `first_stage` beyond the last stage
    is clamped by the network builder (the search space need not know the stage count).
    The 5x5 kernel choice is ours: it costs little extra in the depthwise part.
    """

    name = "depthwise"
    kind = "architecture"
    summary = "depthwise-separable convs from a given stage on"
    hypers = (
        Hyper("kernel", 3, choices=(3, 5), doc="kernel size of the depthwise conv"),
        Hyper(
            "first_stage",
            0,
            low=0,
            high=3,
            integer=True,
            doc="stages with index >= this use separable convs",
        ),
    )

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(
            arch, separable_from=self.params["first_stage"], kernel=self.params["kernel"]
        )
