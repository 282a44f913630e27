"""Where two techniques meet, a declared rule decides the outcome, never code order.

A "resolution" rule allows both and says which technique owns what; the loop and the
techniques implement it, and tests check it. An "exclusive" rule forbids the pair. A
"requires" rule says the first technique builds on the second and may be on only with it.
Besides pairs, some loop slots have a single owner (`ONE_OWNER_SLOTS`), checked by `build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trainer.techniques.base import (
    SLOT_AVERAGING,
    SLOT_FINALIZE,
    SLOT_INFERENCE,
    SLOT_SCHEDULE,
    SLOT_STEP,
)

RuleKind = Literal["resolution", "exclusive", "requires"]
KINDS: tuple[RuleKind, ...] = ("resolution", "exclusive", "requires")

# Loop slots that at most one enabled technique may fill: the optimisation step, the
# learning rate schedule, the averaging phase, the model evaluated, and its deployed form.
ONE_OWNER_SLOTS: tuple[str, ...] = (
    SLOT_STEP,
    SLOT_SCHEDULE,
    SLOT_AVERAGING,
    SLOT_FINALIZE,
    SLOT_INFERENCE,
)


@dataclass(frozen=True)
class Rule:
    """How two techniques combine (`resolution`), that they may not (`exclusive`), or that
    the first may be on only with the second (`requires`)."""

    techniques: tuple[str, str]
    kind: RuleKind
    decision: str
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rule kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.techniques[0] == self.techniques[1]:
            raise ValueError(f"rule names {self.techniques[0]!r} twice")


RULES: tuple[Rule, ...] = (
    Rule(
        ("swa", "one_cycle"),
        "resolution",
        "one_cycle (like the base schedule) runs its whole cycle over the steps before "
        "averaging begins; from the first averaging epoch SWA's SWALR owns the learning rate, "
        "and momentum returns to the trial's value.",
        "Both schedule the learning rate; a cycle cut short by averaging would never anneal.",
    ),
    Rule(
        ("sam", "mixup"),
        "resolution",
        "The batch is mixed once per step, in the batch slot; both SAM passes see that batch.",
        "SAM's ascent and descent must be taken on the same loss.",
    ),
    Rule(
        ("sam", "cutout"),
        "resolution",
        "Holes are cut once per step, in the batch slot; both SAM passes see the same holes.",
        "SAM's ascent and descent must be taken on the same loss.",
    ),
    Rule(
        ("sam", "one_cycle"),
        "resolution",
        "The scheduler steps once per SAM update, not once per forward/backward pass.",
        "total_steps counts optimiser steps; two passes are one step.",
    ),
    Rule(
        ("sam", "swa"),
        "resolution",
        "SWA averages the weights SAM produced; BatchNorm statistics are recomputed on clean "
        "batches, since SAM's second pass never updates them.",
        "They act on different slots (step vs averaging) and compose.",
    ),
    Rule(
        ("mixup", "label_smoothing"),
        "resolution",
        "Targets are one-hots mixed by Mixup, then smoothed exactly once by label_smoothing "
        "in the batch slot; the loss never smooths.",
        "Smoothing twice (mixed smoothed targets into a smoothing loss) is a silent bug.",
    ),
    Rule(
        ("cutout", "mixup"),
        "resolution",
        "Cutout cuts one hole per image before Mixup mixes images (lower batch_order).",
        "The paper's hole is per image; cutting after mixing would blank both sources at once.",
    ),
    Rule(
        ("mixup", "swa"),
        "resolution",
        "The averaged model's BatchNorm statistics are recomputed on clean, un-mixed batches.",
        "Test inputs are never mixed; statistics of mixed inputs would not match them.",
    ),
    Rule(
        ("ema", "swa"),
        "exclusive",
        "Not both: a space declaring both on is refused, a drawn trial with both is rejected "
        "untrained, and a designed combination leaves out the later one (ema).",
        "Both are averagers: each returns its own averaged model as the one evaluated and "
        "saved, and one averager owns that model.",
    ),
    Rule(
        ("ema", "sam"),
        "resolution",
        "The average is updated once per SAM update, after the base optimiser's step, with "
        "the weights at w (never the perturbed w + e).",
        "The ascent is undone before the step; the average follows the optimiser's steps.",
    ),
    Rule(
        ("ema", "mixup"),
        "resolution",
        "The average's BatchNorm statistics are the average of the trained network's, which "
        "saw mixed batches as the network without EMA does; none are re-estimated.",
        "timm's EMA averages the running statistics with the weights and never recomputes them.",
    ),
    Rule(
        ("ema", "tta_flip"),
        "resolution",
        "Flip TTA wraps the averaged model: the average is what predicts on both views.",
        "The averager finalises the model (finalize slot) before it is deployed (inference slot).",
    ),
    Rule(
        ("swa", "tta_flip"),
        "resolution",
        "Flip TTA wraps the averaged model, after its BatchNorm statistics are recomputed on "
        "clean, un-flipped batches.",
        "The averager finalises the model (finalize slot) before it is deployed (inference slot).",
    ),
    Rule(
        ("blurpool", "depthwise"),
        "resolution",
        "The blur replaces each stage's downsampling whatever conv the stage uses.",
        "Anti-aliasing concerns the subsampling, not the convolution before it.",
    ),
    Rule(
        ("inverted_bottleneck", "depthwise"),
        "requires",
        "Inverted bottlenecks replace the separable blocks of the depthwise stages (from "
        "depthwise.first_stage, at depthwise.kernel where a stage declares no kernel); the "
        "stages before keep plain convolutions.",
        "An inverted bottleneck is a depthwise block with a 1x1 expansion in front and a "
        "linear projection after; without depthwise stages there is nothing to expand.",
    ),
    Rule(
        ("inverted_bottleneck", "residual"),
        "resolution",
        "A bottleneck that keeps its shape keeps its own identity shortcut; residual adds a "
        "1x1 conv + BN shortcut to those that change it, with no activation after the add.",
        "One shortcut per block, and the bottleneck's output stays linear (Sandler et al.).",
    ),
    Rule(
        ("se", "residual"),
        "resolution",
        "The SE gate scales the stage's output after its last block's add, once per stage as "
        "without residual, not inside every block's branch as in SE-ResNet.",
        "Switching residual then changes the shortcuts only.",
    ),
    Rule(
        ("blurpool", "residual"),
        "resolution",
        "A blurred stage's blocks and their shortcuts keep stride 1; the blur follows the last "
        "block's add.",
        "Zhang's rule, Conv(s1) + activation + Blur(s2), applied to the block's output.",
    ),
    Rule(
        ("blurpool", "late_downsample"),
        "resolution",
        "Stage 0 keeps full resolution and has nothing to blur; every later downsampling is "
        "blurred.",
        "The blur belongs to a downsampling, not to a stage.",
    ),
)


def check(names: set[str], rules: tuple[Rule, ...] = RULES) -> None:
    """Raise ValueError if two enabled techniques form an exclusive pair, or one is enabled
    without a technique it requires."""
    for rule in rules:
        a, b = rule.techniques
        if rule.kind == "exclusive" and {a, b} <= names:
            raise ValueError(f"{a} and {b} may not both be on: {rule.reason}")
        if rule.kind == "requires" and a in names and b not in names:
            raise ValueError(f"{a} needs {b} on: {rule.reason}")


def requirements(name: str, rules: tuple[Rule, ...] = RULES) -> tuple[str, ...]:
    """The techniques `name` may be on only with."""
    return tuple(r.techniques[1] for r in rules if r.kind == "requires" and r.techniques[0] == name)


def rules_for(name: str, rules: tuple[Rule, ...] = RULES) -> tuple[Rule, ...]:
    """The rules that involve technique `name`, for listings."""
    return tuple(rule for rule in rules if name in rule.techniques)
