"""A study's trained networks on disk: where each trial's weights and checkpoint live, and
the network of a finished trial rebuilt from its parameters (with its weights, to test it).

runs/weights/<study>/trial_<n>.pt holds a finished trial's weights, written whole or not at
all; runs/weights/<study>/checkpoints/ the per-epoch checkpoints of trials still training;
runs/weights/<study>/stopped/ the marks that stop one member of a fused group.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

from search import ledger
from search.errors import UsageError
from search.study import StudyConfig
from spaces import check_name
from trainer.atomic import write_atomic
from trainer.budget import resolve_arch
from trainer.data import Splits
from trainer.models.net import Net
from trainer.techniques import build, deployed


def weights_path(settings: StudyConfig, study_name: str, number: int) -> Path:
    """runs/weights/<study>/trial_<n>.pt: the name is checked, so a path never leaves
    the weights folder whatever a study is called."""
    check_name(study_name, "study name")
    return Path(settings.weights_dir) / study_name / f"trial_{number}.pt"


def checkpoint_path(
    settings: StudyConfig, study_name: str, params: dict[str, Any], seed: int
) -> Path:
    """runs/weights/<study>/checkpoints/<key hash>.pt: a trial's per-epoch checkpoint, named
    by what the trial IS (its configuration key), not its number, so that the re-run of an
    interrupted trial, a new trial number, finds it."""
    check_name(study_name, "study name")
    key = hashlib.sha256(ledger.config_key(params, seed).encode()).hexdigest()[:24]
    return Path(settings.weights_dir) / study_name / "checkpoints" / f"{key}.pt"


def stop_mark(settings: StudyConfig, study_name: str, number: int) -> Path:
    """runs/weights/<study>/stopped/trial_<n>: written by the driver when trial n, a member
    of a fused group still training (`search.runner`), must train no further (successive
    halving pruned it); its worker reads and removes it when the epoch's report returns."""
    check_name(study_name, "study name")
    return Path(settings.weights_dir) / study_name / "stopped" / f"trial_{number}"


def save(model: torch.nn.Module, path: Path) -> None:
    """Save `model`'s weights at `path`: a crash never leaves half a weights file."""
    state = model.state_dict()
    write_atomic(path, lambda partial: torch.save(state, partial))


def network(trial: FrozenTrial, settings: StudyConfig, splits: Splits) -> Net:
    """A finished trial's network as it trained on `splits`' images (its parameters and
    seed replayed, its architecture resolved against the budget), freshly initialised."""
    spec = settings.space().replay(trial.params, ledger.seed_of(trial, settings.seed))
    arch = resolve_arch(spec, splits.image_shape, splits.num_classes).arch
    return Net(arch, splits.image_shape, splits.num_classes)


def trained(trial: FrozenTrial, settings: StudyConfig, splits: Splits, study_name: str) -> Net:
    """A finished trial's network with the weights it trained, on the CPU."""
    path = weights_path(settings, study_name, trial.number)
    if not path.is_file():
        raise UsageError(
            f"no saved weights for trial {trial.number} at {path}; on a multi-machine cluster "
            "the weights directory must be shared by every node"
        )
    model = network(trial, settings, splits)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def as_deployed(model: Net, trial: FrozenTrial, settings: StudyConfig) -> nn.Module:
    """`model` as the trial predicted with it when it was validated and timed: wrapped by
    its inference technique (flip TTA evaluates each image and its mirror), else itself."""
    spec = settings.space().replay(trial.params)
    return deployed(model, build(spec.techniques))
