"""Squeeze-and-Excitation (Hu et al., CVPR 2018); the block is trainer.models.squeeze_excite."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trainer.models.squeeze_excite import SqueezeExcite
from trainer.techniques.base import Hyper, Technique

if TYPE_CHECKING:
    from trainer.models.net import Net
    from trainer.spec import ArchSpec


class SqueezeExcitation(Technique):
    """Channel gates from globally pooled features, after each stage's convs.

    The paper's ratio is 1/16 at 64+ channel layers; at 8-16 channels that gives a hidden
    width of 1, so the default is 1/4 and the search covers 1/16..1/2. The hidden width rule
    is `se_hidden_width`, counted exactly in the parameter budget.
    """

    name = "se"
    kind = "architecture"
    summary = "squeeze-and-excitation channel gates"
    source = "Hu et al., CVPR 2018"
    hypers = (Hyper("ratio", 0.25, low=0.0625, high=0.5, log=True, doc="hidden width / channels"),)

    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return replace(arch, se_ratio=self.params["ratio"])

    def absent_from(self, model: Net) -> str | None:
        stages = list(model.features)[1:]
        missing = [
            i for i, s in enumerate(stages) if not any(isinstance(m, SqueezeExcite) for m in s)
        ]
        return f"stage(s) {', '.join(map(str, missing))} have no SE gate" if missing else None
