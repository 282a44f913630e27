"""The trainer's input: a plain, typed description of one trial.

Everything a trial needs to be rebuilt crosses process boundaries as this spec (or as the
flat parameter dict a space turns into it), so it holds only plain values. It imports
nothing from the project (tests/test_layering.py): every layer may read it without pulling in
torch or the technique registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A hyperparameter value, as it crosses process boundaries and is stored with a trial.
Value = bool | int | float | str


@dataclass(frozen=True)
class StageSpec:
    """A stage: `blocks` convolutions at one resolution, then optional downsampling by 2."""

    channels: int
    blocks: int = 1
    downsample: bool = True
    # Kernel size of the stage's spatial convolution: the plain one, or the depthwise one of
    # separable and inverted-bottleneck blocks. None: 3, or the depthwise technique's kernel.
    kernel: int | None = None


@dataclass(frozen=True)
class ArchSpec:
    """A plain CNN: a 3x3 stem, stages, a classifier head.

    Architecture techniques rewrite the fields after the first group; the budget scaler
    rewrites `width` and `channel_delta`.
    """

    stages: tuple[StageSpec, ...]
    stem_channels: int = 8
    width: float = 1.0
    # Per-stage channel corrections (stem first) that the budget scaler applies after `width`.
    channel_delta: tuple[int, ...] = ()
    downsample: str = "maxpool"  # "maxpool" (2x2 max pool) | "stride" (stride-2 conv)

    # Set by architecture techniques.
    separable_from: int | None = None  # stages with index >= this use depthwise-separable convs
    kernel: int = 3  # kernel size of the depthwise convolution in separable blocks
    head: str = "flatten"  # "flatten" (flatten + linear) | "gap" (global average pool + linear)
    blur: int | None = None  # BlurPool filter size; None keeps plain downsampling
    se_ratio: float | None = None  # Squeeze-and-Excitation hidden width ratio; None = no SE
    # Inverted-bottleneck expansion ratio of the depthwise stages' blocks; None: separable.
    expansion: int | None = None
    bottleneck_act: str = "relu6"  # activation inside inverted bottlenecks: "relu6" | "relu"
    residual: bool = False  # a shortcut around every block (identity or 1x1 projection)
    late_downsample: bool = False  # stage 0 keeps full resolution: its downsampling is dropped

    def downsamples(self, index: int) -> bool:
        """Whether stage `index` ends in a downsampling by 2, as built."""
        return self.stages[index].downsample and not (index == 0 and self.late_downsample)


@dataclass(frozen=True)
class TrainSpec:
    """Optimiser and loop settings shared by every technique."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    # Learning-rate decay over the steps before any averaging phase (trainer/schedule.py):
    # "cosine" to zero, or "constant". A technique owning the schedule (one-cycle) replaces it.
    schedule: str = "cosine"
    # Fraction of those steps spent warming the base schedule up linearly from ~0 to `lr`
    # (Goyal et al. 2017); 0: none. One-cycle brings its own warm-up and ignores it.
    warmup_fraction: float = 0.0
    # Weight decay 0 for every parameter of one dimension or fewer: BatchNorm weights and
    # biases, and every bias (timm's `param_groups_weight_decay`).
    no_wd_bn_bias: bool = False
    # Whole-batch augmentation applied before any technique's batch slot.
    crop_padding: int = 0
    flip: bool = False


@dataclass(frozen=True)
class TrialSpec:
    """One trial: the architecture, the training recipe and the enabled techniques."""

    arch: ArchSpec
    train: TrainSpec = field(default_factory=TrainSpec)
    # Enabled techniques by registered name, with their hyperparameters.
    techniques: dict[str, dict[str, Value]] = field(default_factory=dict)
    seed: int = 0
    # Parameter budget: "scale" widens or narrows the network to land just under it,
    # "reject" refuses a configuration over it. None: train the architecture as given.
    budget: int | None = None
    budget_policy: str = "scale"
