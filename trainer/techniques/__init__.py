"""The registered techniques: one file each, one line in `_TECHNIQUES` to add another.

The space, the CLI listing, the export columns and the tests all derive from `REGISTRY`.
"""

from __future__ import annotations

from trainer.techniques import rules
from trainer.techniques.base import Hyper, Technique, Value, deployed
from trainer.techniques.blurpool import BlurPool
from trainer.techniques.cutout import Cutout
from trainer.techniques.depthwise import Depthwise
from trainer.techniques.ema import EMA
from trainer.techniques.gap import GlobalAvgPool
from trainer.techniques.inverted_bottleneck import InvertedBottlenecks
from trainer.techniques.label_smoothing import LabelSmoothing
from trainer.techniques.late_downsample import LateDownsample
from trainer.techniques.mixup import Mixup
from trainer.techniques.one_cycle import OneCycle
from trainer.techniques.residual import ResidualShortcuts
from trainer.techniques.sam import SAM
from trainer.techniques.squeeze_excite import SqueezeExcitation
from trainer.techniques.swa import SWA
from trainer.techniques.tta_flip import TTAFlip

# Architecture first, then batch transforms in batch_order, then step, schedule, averaging,
# inference: `build` returns techniques in this order.
_TECHNIQUES: tuple[type[Technique], ...] = (
    Depthwise,
    GlobalAvgPool,
    BlurPool,
    SqueezeExcitation,
    InvertedBottlenecks,
    ResidualShortcuts,
    LateDownsample,
    Cutout,
    Mixup,
    LabelSmoothing,
    SAM,
    OneCycle,
    SWA,
    EMA,
    TTAFlip,
)

REGISTRY: dict[str, type[Technique]] = {cls.name: cls for cls in _TECHNIQUES}


def build(techniques: dict[str, dict[str, Value]]) -> list[Technique]:
    """Instantiate the enabled techniques, in registry order, after checking every rule.

    Raises ValueError for an unknown technique or hyperparameter, a value out of range, an
    exclusive pair, a technique without one it requires, or two techniques filling a
    single-owner slot.
    """
    unknown = sorted(set(techniques) - set(REGISTRY))
    if unknown:
        raise ValueError(
            f"unknown technique(s) {', '.join(unknown)}; accepted: {', '.join(REGISTRY)}"
        )
    rules.check(set(techniques))
    built = [cls(**techniques[name]) for name, cls in REGISTRY.items() if name in techniques]
    for slot in rules.ONE_OWNER_SLOTS:
        owners = [t.name for t in built if t.fills(slot)]
        if len(owners) > 1:
            raise ValueError(f"{' and '.join(owners)} both fill the {slot!r} slot; at most one may")
    return built


__all__ = ["REGISTRY", "Hyper", "Technique", "Value", "build", "deployed"]
