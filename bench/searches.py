"""Helpers of the benchmarks that run whole studies as a user runs them (`search run`):
a small MNIST subset as an .npz data set, a preset rewritten to train on it, and one study
in its own directory and SQLite storage, read back afterwards.

MNIST subsets keep an epoch to seconds, so a study of many trials fits on a shared 2-core
machine; the network, budget and techniques are the preset's.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from common import DATA_DIR
from optuna.trial import TrialState

import spaces
from search.ledger import PRUNED_EPOCH
from trainer.data import load_dataset


def mnist_subset(folder: Path, images: int, seed: int = 0) -> Path:
    """A seeded random subset of MNIST's training set (its validation split is carved from
    it by the space) and 1,000 test images, as an .npz file in `folder`."""
    data = load_dataset("mnist", str(DATA_DIR))
    pick = np.random.default_rng(seed).permutation(len(data.y_train))[:images]
    path = folder / f"mnist_{images}.npz"
    np.savez(
        path,
        x_train=data.x_train[pick],
        y_train=data.y_train[pick],
        x_test=data.x_test[:1000],
        y_test=data.y_test[:1000],
    )
    return path


def space_file(folder: Path, preset: str, dataset: Path, **edits: Any) -> Path:
    """`preset` training on `dataset`, with `section__key=value` edits (search__trials=8)."""
    raw = copy.deepcopy(spaces.load(preset).source)
    raw["data"]["dataset"] = str(dataset)
    for dotted, value in edits.items():
        section, key = dotted.split("__")
        raw.setdefault(section, {})[key] = value
    path = folder / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spaces.load(str(path))  # fail here, not in the subprocess
    return path


@dataclass
class Run:
    """One finished `search run`: its study, wall time, and the trials' share of it."""

    study: optuna.Study
    wall: float  # the whole command: imports, data, Ray's start, trials, the front
    trial_seconds: float  # from the first trial asked for to the last one finished
    stdout: str

    def trials(self, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(states=states or None)

    def epochs_trained(self, epochs: int) -> int:
        """Epochs the study trained: all of them for a complete trial, up to the rung for a
        pruned one."""
        return sum(
            epochs if t.state == TrialState.COMPLETE else t.user_attrs[PRUNED_EPOCH]
            for t in self.trials(TrialState.COMPLETE, TrialState.PRUNED)
        )

    def best_accuracy(self) -> float:
        return max(t.values[0] for t in self.trials(TrialState.COMPLETE))


def run_study(space: Path, name: str, folder: Path, *args: str) -> Run:
    """`search run SPACE --study NAME ARGS` in `folder`, with its own storage there."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'studies.db'}"
    command = [sys.executable, "-m", "search.cli", "run", str(space), "--study", name]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--storage", url, *args], cwd=folder, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    # The last progress line ends with the seconds since the study's trials began.
    last = [line for line in result.stdout.splitlines() if line.startswith("[")][-1]
    seconds = float(re.search(r"(\d+)s$", last).group(1))
    study = optuna.load_study(study_name=name, storage=url)
    return Run(study, wall, seconds, result.stdout)
