"""Residual shortcuts (He et al., CVPR 2016); the block is trainer.models.residual."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.models.residual import Residual
from trainer.techniques.base import Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class ResidualShortcuts(Technique):
    """Every block of every stage gets a shortcut: y = ReLU(F(x) + S(x)), S the identity where
    the block keeps channels and resolution, else a 1x1 conv (stride 2 where the block
    strides) + BN, He et al.'s option B.

    The unit is the stage's block as built: one conv (plain stages), depthwise + pointwise
    (separable), or a whole inverted bottleneck. He et al. found a one-layer residual no
    better than a plain layer on deep nets; at 1.5K parameters the question is open, and the
    projection's parameters are paid for with width like any other. Post-activation, as the
    paper: the block's last ReLU moves after the add. A bottleneck keeps its own identity
    where it has one and gets no ReLU after the add (rules.py).
    """

    name = "residual"
    kind = "architecture"
    summary = "shortcut around every block: identity, or 1x1 conv + BN where the shape changes"
    source = "He et al., CVPR 2016, Deep residual learning"

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, residual=True)

    def absent_from(self, model: Net) -> str | None:
        if any(isinstance(m, Residual) for m in model.modules()):
            return None
        return "every block has a shortcut of its own (inverted bottlenecks that keep their shape)"
