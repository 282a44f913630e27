"""BlurPool anti-aliased downsampling (Zhang, ICML 2019); the block is trainer.models.blurpool."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from torch import nn

from trainer.models.blurpool import BlurPool2d
from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class BlurPool(Technique):
    """Low-pass filter every downsampling: zero parameters, some FLOPs, better shift invariance.

    Size 3 ([1, 2, 1]) is the paper's usual choice; 2..5 are the binomial filters it defines.
    """

    name = "blurpool"
    kind = "architecture"
    summary = "binomial blur before every downsampling (anti-aliasing)"
    source = "Zhang, ICML 2019, Making CNNs shift-invariant again"
    hypers = (Hyper("size", 3, low=2, high=5, integer=True, doc="binomial filter size"),)

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, blur=self.params["size"])

    def absent_from(self, model: Net) -> str | None:
        downsampling = [i for i in range(len(model.arch.stages)) if model.arch.downsamples(i)]
        if not downsampling:
            return "the model never downsamples, so there is nothing to blur"
        plain = [i for i in downsampling if not _blurred(model.features[i + 1])]
        if plain:
            return f"stage(s) {', '.join(map(str, plain))} downsample without a blur"
        return None


def _blurred(stage: nn.Sequential) -> bool:
    """The stage ends in a stride-2 blur fed at full resolution (Zhang 2019): after a
    stride-1 max pool or a stride-1 convolution, never after another subsampling."""
    *before, last = stage
    return (
        isinstance(last, BlurPool2d)
        and last.stride == 2
        and not any(
            getattr(m, "stride", 1) not in (1, (1, 1)) for layer in before for m in layer.modules()
        )
    )
