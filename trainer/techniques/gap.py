"""Global average pooling head (Lin et al., "Network in Network")."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from torch import nn

from trainer.techniques.base import Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class GlobalAvgPool(Technique):
    """Spatial mean then a small linear classifier, instead of flatten + a large linear layer.

    In a small CNN the flattened head often holds most of the parameters; this removes them.
    """

    name = "gap"
    kind = "architecture"
    summary = "global average pooling head instead of flatten + linear"
    source = "Lin et al. 2014, Network in Network"

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, head="gap")

    def absent_from(self, model: Net) -> str | None:
        if isinstance(model.head[0], nn.AdaptiveAvgPool2d):
            return None
        return "the head does not begin with a global average pool"
