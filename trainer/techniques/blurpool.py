"""BlurPool anti-aliased downsampling (Zhang, ICML 2019); the block is trainer.models.blurpool."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.spec import ArchSpec


class BlurPool(Technique):
    """Low-pass filter every downsampling: zero parameters, some FLOPs, better shift invariance.

    Size 3 ([1, 2, 1]) is the paper's usual choice; 2..5 are the binomial filters it defines.
    """

    name = "blurpool"
    kind = "architecture"
    summary = "binomial blur before every downsampling (anti-aliasing)"
    hypers = (Hyper("size", 3, low=2, high=5, integer=True, doc="binomial filter size"),)

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, blur=self.params["size"])
