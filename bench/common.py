"""Helpers shared by the trainer and technique benchmarks: baselines from the presets, the
trainer timed as a trial runs it, interleaved medians, and markdown output.

Both scripts time variants interleaved in one process (round-robin, after a warm-up round)
and report medians, because this 2-core machine is shared and its load drifts.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

import spaces
from trainer.budget import resolve_arch
from trainer.data import Splits, load_dataset, make_splits
from trainer.data.load import DATA_DIR_ENV, read_env
from trainer.measure import count_flops, meta_model
from trainer.spec import ArchSpec, TrialSpec
from trainer.techniques.base import Value
from trainer.train import train

# The shared data folder next to the checkout, as the tests resolve it.
DATA_DIR = Path(read_env(DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")
# The two baseline families, by preset, with the name the tables print.
PRESETS = {"mnist_budget_1_5k": "MNIST ~1.5K", "cifar_budget_140k": "CIFAR-10 ~140K"}

K = TypeVar("K")  # what a measure is keyed by: a name, or a tuple


@dataclass(frozen=True)
class Baseline:
    """A preset's baseline trial (its `baseline:` techniques on) and the data it trains on."""

    label: str
    space: spaces.Space
    spec: TrialSpec
    splits: Splits  # the full splits: 54k (MNIST) or 45k (CIFAR-10) training images

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return self.splits.image_shape

    def arch(self, spec: TrialSpec | None = None) -> ArchSpec:
        """The architecture `spec` (default: the baseline) trains, fitted to the budget."""
        return resolve_arch(spec or self.spec, self.in_shape, self.splits.num_classes).arch

    def variant(
        self, add: dict[str, dict[str, Value]] | None = None, drop: Sequence[str] = ()
    ) -> TrialSpec:
        """The baseline with techniques added (default hyperparameters if `{}`) or dropped."""
        techniques = {k: v for k, v in self.spec.techniques.items() if k not in drop}
        return replace(self.spec, techniques={**techniques, **(add or {})})


def load_baseline(preset: str, data_dir: Path = DATA_DIR) -> Baseline:
    space = spaces.load(preset)
    spec = space.replay(space.baseline_params())
    data = load_dataset(space.data.dataset, data_dir)
    splits = make_splits(data, val_fraction=space.data.val_fraction, seed=0)
    return Baseline(PRESETS.get(preset, preset), space, spec, splits)


def subset(splits: Splits, images: int) -> Splits:
    """The first `images` training images (validation kept small: it is not timed)."""
    return replace(
        splits,
        x_train=splits.x_train[:images],
        y_train=splits.y_train[:images],
        x_val=splits.x_val[:1000],
        y_val=splits.y_val[:1000],
    )


def trainer_rate(spec: TrialSpec, splits: Splits, threads: int, epochs: int = 1) -> float:
    """Training images/s of `trainer.train` itself, as a trial runs it (its own clock)."""
    spec = replace(spec, train=replace(spec.train, epochs=epochs))
    return train(spec, splits, threads=threads, latency_runs=2).images_per_second


def flops_of(arch: ArchSpec, in_shape: tuple[int, int, int], num_classes: int = 10) -> int:
    """Forward FLOPs at batch 1, counted on the meta device (nothing allocated)."""
    return count_flops(meta_model(arch, in_shape, num_classes), in_shape)


def interleaved_samples(
    measures: dict[K, Callable[[], float]], repeats: int, warmup: bool = True
) -> dict[K, list[float]]:
    """`repeats` calls of each measure, called round-robin after one warm-up round, so load
    drift hits every variant alike."""
    if warmup:
        for measure in measures.values():
            measure()
    samples: dict[K, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            samples[name].append(measure())
    return samples


def interleaved_medians(
    measures: dict[K, Callable[[], float]], repeats: int, warmup: bool = True
) -> dict[K, float]:
    """The median of each measure's interleaved samples (see `interleaved_samples`)."""
    samples = interleaved_samples(measures, repeats, warmup)
    return {name: statistics.median(values) for name, values in samples.items()}


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    """CPU model, core count and versions, for the report header."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return (
        f"{model}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats are printed with 3 significant digits or as integers."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class TextbookImages(Dataset):
    """torchvision's MNIST/CIFAR10 `__getitem__` over in-memory uint8 HWC arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.x[i]
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        return self.transform(pil), int(self.y[i])
