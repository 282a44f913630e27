"""The in-memory shapes every loader produces and every trial trains on.

Arrays stay numpy uint8 NHWC until `DeviceData` puts them on a device: that is the layout
image files, torchvision's `.data` and `.npz` files already use, so loading never copies
pixels more than once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


class DataError(ValueError):
    """A data set that cannot be used as given; the message says what is wrong and expected."""


class _Described:
    """Classes and image shape, read off the data rather than declared per data set."""

    classes: tuple[str, ...]
    x_train: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the order a model's first layer needs."""
        _, h, w, c = self.x_train.shape
        return (c, h, w)


@dataclass(frozen=True)
class ImageSet(_Described):
    """A whole data set in memory, as loaded: uint8 (N, H, W, C) images, int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Splits(_Described):
    """What every trial of a study trains, validates and tests on; identical across trials.

    `mean` and `std` are per channel in [0, 1] pixel units, computed from the training split
    only, so no validation or test pixel leaks into the normalisation.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 NHWC images, in [0, 1] pixel units.

    Sums run in int64 over chunks: exact, and without the 1.2 GB float64 temporary that
    `np.std` would allocate for CIFAR-10. Plain single-threaded numpy, because many small
    multi-threaded torch reductions slowed down tenfold on a machine shared with other jobs.
    """
    flat = x.reshape(-1, x.shape[-1])
    total = np.zeros(flat.shape[1], dtype=np.int64)
    squares = np.zeros(flat.shape[1], dtype=np.int64)
    for start in range(0, len(flat), 1 << 16):
        # Channels as contiguous rows: reductions along a length-C inner axis are 3x slower.
        chunk = np.ascontiguousarray(flat[start : start + (1 << 16)].T, dtype=np.int32)
        total += chunk.sum(1)
        squares += np.einsum("ij,ij->i", chunk, chunk, dtype=np.int64)
    mean = total / len(flat)
    std = np.sqrt(np.maximum(squares / len(flat) - mean * mean, 0.0))
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def shared_tensor(x: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing `x`'s memory, for reading only.

    Cached data sets are read-only memory maps; torch warns that writing to such a tensor
    would be undefined, which callers of this never do.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(x)
