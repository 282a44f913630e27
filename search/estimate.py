"""What a designed study will cost, for `search ablate --dry-run`: each configuration's size
(parameters and channels, after the budget) and its training time, estimated from a short
probe on this machine.

The probe trains each configuration for a few steps with the study's recipe, batch size and
per-trial threads, through the trainer every trial runs (so a technique that costs a second
pass, as SAM does, costs it here too), and scales the time of one step by the steps per
epoch, the epochs and the seeds. It is an estimate: trials that run side by side share the
machine, and validation, latency timing and each trial's start-up are not in it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import dataclass, replace

import torch

from search import execution, progress
from search.ablate import Design
from spaces import Space
from trainer.budget import resolve_arch
from trainer.data import Splits
from trainer.models.net import stage_channels
from trainer.spec import TrialSpec
from trainer.train import full_batches, train

# A probe epoch is this many steps; after one to warm up, up to PROBE_REPEATS are timed, or
# fewer once they took PROBE_SECONDS: tiny nets get repeats to beat the noise, large ones
# cost a few seconds each.
PROBE_STEPS, PROBE_REPEATS, PROBE_SECONDS = 4, 5, 0.5


@dataclass(frozen=True)
class Cost:
    """One configuration: its size as it will train, and one training step's time."""

    label: str
    params: int
    channels: str  # stem and stages after the budget, as the export's `channels`
    step_seconds: float


# A 1-minute load average from this much up counts as other work on the machine: a probe
# whose threads share busy cores runs many times slower than it will alone (two 2-thread
# trials on 2 cores ran ~10x slower than two 1-thread ones, README), so the table says so.
BUSY_LOAD = 1.0


@dataclass(frozen=True)
class Machine:
    """Where the probe ran, as the trials will: device, threads per trial, and the load
    other processes put on its cores before the probe began."""

    device: str
    threads: int
    parallel: int
    load: float = 0.0

    @classmethod
    def here(cls, parallel: int, gpus_per_trial: float) -> Machine:
        """This machine as a local study's first run would use it (`execution.first`):
        `parallel` trials at once, the cores shared out among them, or one thread beside a
        GPU share."""
        gpus = gpus_per_trial if torch.cuda.is_available() else 0.0
        chosen = execution.first(parallel, gpus, float(os.cpu_count() or 1))
        return cls(chosen.device, chosen.threads, parallel, os.getloadavg()[0])


def steps_per_epoch(space: Space, splits: Splits) -> int:
    """Optimiser steps in one epoch of a trial at the space's batch size."""
    return full_batches(len(splits.x_train), space.train.batch_size)


def probe(
    design: Design, space: Space, splits: Splits, machine: Machine, steps: int = PROBE_STEPS
) -> list[Cost]:
    """Each configuration's size, and the seconds of one training step, measured on the
    first `steps` batches of the training split."""
    batch = min(space.train.batch_size, len(splits.x_train))
    n = min(len(splits.x_train), steps * batch)
    first = {"x_train": splits.x_train[:n], "y_train": splits.y_train[:n]}
    small = replace(splits, **first, x_val=splits.x_val[:1], y_val=splits.y_val[:1])
    costs = []
    for config in design.configs:
        spec = space.replay(space.default_params(config.techniques))
        fit = resolve_arch(spec, splits.image_shape, splits.num_classes)
        channels = "-".join(map(str, stage_channels(fit.arch)))
        step = _epoch_seconds(spec, small, machine) / (n // batch)
        costs.append(Cost(config.label, fit.params, channels, step))
    return costs


class _Timed(Exception):
    """Ends a probe's training once its epochs are timed."""


def _epoch_seconds(spec: TrialSpec, splits: Splits, machine: Machine) -> float:
    """The fastest of a few epochs over `splits` after a first one that warms up (memory,
    kernel choice): on a shared machine noise only ever adds time. Epochs are timed until
    PROBE_REPEATS of them, or PROBE_SECONDS in all, whichever comes first."""
    ends: list[float] = []  # after each epoch and its validation (of one image)

    def on_epoch(epoch: int, accuracy: float) -> None:
        ends.append(time.perf_counter())
        if len(ends) > PROBE_REPEATS or ends[-1] - ends[0] >= PROBE_SECONDS:
            raise _Timed

    with contextlib.suppress(_Timed):
        train(
            replace(spec, train=replace(spec.train, epochs=PROBE_REPEATS + 1)),
            splits,
            device=machine.device,
            threads=machine.threads,
            on_epoch=on_epoch,
        )
    return min(b - a for a, b in itertools.pairwise(ends))


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else progress.duration(seconds)


def describe(costs: list[Cost], space: Space, splits: Splits, seeds: int, machine: Machine) -> str:
    """The cost table the dry run prints, saying how it was estimated."""
    steps = steps_per_epoch(space, splits) * space.train.epochs
    threads = f"{machine.threads} thread" + ("" if machine.threads == 1 else "s")
    lines = [
        f"cost per configuration (an estimate: {PROBE_STEPS} training steps of each timed "
        f"here on {machine.device}, {threads} per trial, batch "
        f"{min(space.train.batch_size, len(splits.x_train))}, scaled to "
        f"{steps_per_epoch(space, splits)} steps per epoch x {space.train.epochs} epochs; "
        "validation, latency timing and start-up not included):"
    ]
    width = max(len("configuration"), *(len(c.label) for c in costs))
    channels = max(len("channels"), *(len(c.channels) for c in costs))
    lines.append(
        f"  {'configuration':{width}}  {'params':>9}  {'channels':{channels}}  "
        f"{'per trial':>9}  {f'x {seeds} seeds':>10}"
    )
    total = 0.0
    for cost in costs:
        trial = cost.step_seconds * steps
        total += trial * seeds
        lines.append(
            f"  {cost.label:{width}}  {cost.params:>9,}  {cost.channels:{channels}}  "
            f"{_seconds(trial):>9}  {_seconds(trial * seeds):>10}"
        )
    at_once = f"{machine.parallel} trial" + (" at once" if machine.parallel == 1 else "s at once")
    lines.append(
        f"estimated training time: {_seconds(total)} in all, about "
        f"{_seconds(total / machine.parallel)} with {at_once}, plus each trial's start-up"
    )
    if machine.load >= BUSY_LOAD:
        lines.append(
            f"note: other work kept this machine busy as the probe ran (1-minute load "
            f"{machine.load:.1f}); the times above are what trials take while it stays so, "
            "and can be many times what they take on idle cores"
        )
    return "\n".join(lines)
