"""Which trials may train together as one fused group (`trainer.train.train_group`).

The rule lives here and nowhere else: the runner forms groups by `group_key`, the trainer
refuses a group whose members' keys differ, and `search techniques` prints `RULE`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace

from trainer import techniques as registry
from trainer.models.net import stage_channels
from trainer.spec import ArchSpec, TrialSpec
from trainer.techniques.base import SLOT_STEP, owner

RULE = (
    "Trials share a fused group when they build the same network (the architecture after "
    "its techniques and budget fitting: same blocks and channel counts), train with the "
    "same batch size and number of epochs, and either all use SAM or none does (SAM takes "
    "two forward and backward passes per step). Everything else is each member's own: "
    "seed, lr, momentum, weight decay and whether BatchNorm and biases skip it, nesterov, "
    "schedule and its warm-up, crop and flip, one_cycle, mixup, cutout, label_smoothing, "
    "swa, ema, tta_flip, and SAM's rho and adaptive."
)

# Members per group that `--fuse auto` forms, by device type. CPU: from bench/bench_fused.py
# (BENCHMARKS.md, "Fused groups on CPU"): at one thread, groups of 3-4 trained 1.06-1.26x the
# images/s of one trial and groups of 8 less; study-wide, where a group also shares what a
# trial costs besides training, the quickstart ablation took 1.6-2.1x less time. CUDA: not
# measured here yet (bench/bench_gpu.py has not run on a GPU); 16 after the published
# anchors, HFTA (up to 15x over one job per GPU) and Hydro (10 fused 5.9x, 100 fused 14.6x
# the throughput of one).
AUTO_MEMBERS = {"cpu": 4, "cuda": 16}


def built_arch(arch: ArchSpec) -> ArchSpec:
    """`arch` with its channel counts written out: two specs that reach the same counts by
    different widths or corrections build the same network."""
    stem, *stages = stage_channels(arch)
    return replace(
        arch,
        stem_channels=stem,
        stages=tuple(replace(s, channels=c) for s, c in zip(arch.stages, stages, strict=True)),
        width=1.0,
        channel_delta=(),
    )


def group_key(spec: TrialSpec, arch: ArchSpec) -> Hashable:
    """Equal for trials that may share a group (`RULE`); `arch` is the spec's resolved
    architecture (`trainer.budget.resolve_arch`).

    Why each part: one fused network runs every member, so the network must be the same;
    the members' batches are laid side by side, so they are the same size, and every member
    takes the same steps; the step slot's owner decides how many passes a step takes."""
    step_owner = owner(registry.build(spec.techniques), SLOT_STEP)
    return (
        built_arch(arch),
        spec.train.batch_size,
        spec.train.epochs,
        step_owner.name if step_owner else None,
    )
