"""Keep full resolution through the first stage (SimpNet, Hasanpour et al. 2018)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.techniques.base import Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class LateDownsample(Technique):
    """Stage 0 keeps the input resolution: its downsampling is dropped, so the first one
    happens at the end of stage 1 and the network downsamples once less.

    SimpNet's ablation gained by delaying pooling so that early layers see full-size maps;
    it costs no parameters in the convolutions (a flatten head grows with the larger final
    map, paid for with width) and about 4x the FLOPs of every later stage.
    """

    name = "late_downsample"
    kind = "architecture"
    summary = "the first stage keeps full resolution (its downsampling dropped)"
    source = "Hasanpour et al. 2018, SimpNet (arXiv 1802.06205)"

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, late_downsample=True)

    def absent_from(self, model: Net) -> str | None:
        if model.arch.stages[0].downsample:
            return None
        return "stage 0 keeps full resolution already (model.stages[0].downsample is false)"
