"""A trial's state at the end of an epoch, on disk, so that an interrupted trial continues
from its last epoch instead of training from scratch.

A checkpoint holds everything the rest of training depends on: the epoch reached, the
weights, the optimiser (momentum buffers, and the learning rate and momentum the schedule
set), the active scheduler, each technique's own state (SWA's averaged model), the data
and augmentation generator and the global RNG, the training time so far and the last
epoch's loss. Resumed, training is bit-for-bit the run that was never interrupted (on CPU).

Files are written atomically (trainer/atomic.py), so a kill mid-write leaves the previous
checkpoint or none, never half of one. A file that cannot be read or was written for
anything else (another spec, data size, device or format) is ignored with a logged reason:
the trial then trains from scratch. Loaded with `weights_only=True`, so a checkpoint can hold
tensors and plain values only, never code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.atomic import write_atomic
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.techniques.base import Technique

log = logging.getLogger(__name__)

# Raised whenever what a checkpoint holds, or how it is restored, changes: an older file is
# then ignored rather than restored into state it does not describe.
FORMAT = 1
# Recipe fields added since FORMAT 1, left out of the fingerprint at their defaults: a trial
# that does not use them resumes a checkpoint written before they existed.
ADDED_TRAIN_FIELDS = ("warmup_fraction", "no_wd_bn_bias")
# Architecture fields added since FORMAT 1 (blocks), left out alike at their defaults.
ADDED_ARCH_FIELDS = ("expansion", "bottleneck_act", "residual", "late_downsample")
ADDED_STAGE_FIELDS = ("kernel",)


def fingerprint(spec: TrialSpec, *, steps_per_epoch: int, batch_size: int, device: str) -> str:
    """What a checkpoint must have been written for to be resumed: the same trial, data size,
    batch and device type (a CUDA generator's state means nothing to a CPU one)."""
    described = asdict(spec)
    for name in ADDED_TRAIN_FIELDS:
        if described["train"][name] == getattr(TrainSpec, name):
            del described["train"][name]
    for name in ADDED_ARCH_FIELDS:
        if described["arch"][name] == getattr(ArchSpec, name):
            del described["arch"][name]
    for stage in described["arch"]["stages"]:
        for name in ADDED_STAGE_FIELDS:
            if stage[name] == getattr(StageSpec, name):
                del stage[name]
    return json.dumps(
        [FORMAT, described, steps_per_epoch, batch_size, device], sort_keys=True, default=str
    )


@dataclass
class TrainState:
    """What training carries from one epoch to the next, and a checkpoint saves: the
    network, its optimiser, the scheduler active now (the averaging one once averaging has
    begun), the data and augmentation generator, and the techniques' own state. The global
    RNG is not part of it: that belongs to the process (`save` and `Saved.restore` take it)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator
    techniques: list[Technique]

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (a checkpoint is loaded with `weights_only=True`)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": _plain(self.scheduler.state_dict())
            if self.scheduler is not None
            else None,
            "techniques": {t.name: s for t in self.techniques if (s := t.state_dict())},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put `state_dict`'s values back into these freshly built objects."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for technique in self.techniques:
            technique.load_state_dict(state["techniques"].get(technique.name, {}), self.model)
        self.generator.set_state(state["generator"])


@dataclass(frozen=True)
class Saved:
    """A checkpoint read back and checked against the trial about to train."""

    epoch: int  # epochs completed
    train_seconds: float  # training time of those epochs, across every attempt
    final_loss: float  # mean training loss of the last completed epoch
    state: dict[str, Any]

    def restore(self, state: TrainState) -> None:
        """Put the saved state into `state`, freshly built, whose scheduler must be the one
        active after epoch `self.epoch`; then the process's global RNG."""
        state.load_state_dict(self.state)
        torch.set_rng_state(self.state["rng"])


def save(
    path: Path,
    state: TrainState,
    *,
    fingerprint: str,
    epoch: int,
    train_seconds: float,
    final_loss: float,
) -> None:
    """Write `state` after `epoch` completed epochs to `path`, atomically."""
    saved = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "train_seconds": train_seconds,
        "final_loss": final_loss,
        **state.state_dict(),
        "rng": torch.get_rng_state(),
    }
    write_atomic(path, lambda partial: torch.save(saved, partial))


def load(path: Path, *, fingerprint: str, model: nn.Module) -> Saved | None:
    """The checkpoint at `path` if it exists and fits this trial (`fingerprint`, and
    `model`'s tensor layout); None otherwise, with the reason logged when a file was there."""
    if not path.is_file():
        return None
    try:
        # On the CPU: RNG states must stay there; restoring copies the rest to the device.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or holding more than tensors and values
        return _ignored(path, f"unreadable: {type(err).__name__}: {str(err)[:200]}")
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return _ignored(path, "written for another trial spec, data size, device or format")
    if _layout(state.get("model")) != _layout(model.state_dict()):
        return _ignored(path, "its model's tensors differ from this trial's model")
    return Saved(
        epoch=state["epoch"],
        train_seconds=state["train_seconds"],
        final_loss=state["final_loss"],
        state=state,
    )


def _ignored(path: Path, reason: str) -> None:
    log.warning("checkpoint %s ignored, training from scratch: %s", path, reason)


def _layout(state: object) -> object:
    """Names, shapes and dtypes of a state dict's tensors: what must match to load it."""
    if not isinstance(state, dict):
        return None
    return {k: (tuple(v.shape), v.dtype) if torch.is_tensor(v) else v for k, v in state.items()}


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler's state without its functions (some PyTorch versions keep a bound anneal
    function there): `weights_only` refuses code, and the rebuilt scheduler has its own."""
    return {k: v for k, v in state.items() if not callable(v)}
