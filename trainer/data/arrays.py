"""Checking and shaping raw arrays into an `ImageSet`: the one gate every loader passes.

Whatever a source provides (a user's `.npz`, torchvision's `.data`, decoded image files)
ends up here, so the rules about dtype, shape and labels are stated once, and the number
of classes, image size and channel count are read from the data, never assumed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data.base import DataError, ImageSet, shared_tensor

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_FORMAT = (
    "a .npz holds x_train, y_train, x_test, y_test: uint8 images (N, H, W[, C]) with C 1 or 3, "
    "labels 0..K-1; optional 'classes'"
)


def image_set(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str] | None = None,
    *,
    where: str,
) -> ImageSet:
    """Validate raw arrays and return them as uint8 NHWC images with int64 labels.

    `where` names the origin (a file, a folder) in error messages.
    """
    xs = {"x_train": x_train, "x_test": x_test}
    for key, x in xs.items():
        xs[key] = _images(key, x, where)
    if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
        raise DataError(
            f"{where}: train images are (H, W, C) {xs['x_train'].shape[1:]} but test images are "
            f"{xs['x_test'].shape[1:]}; both must have one size and channel count"
        )
    ys = {"y_train": _labels("y_train", y_train, len(xs["x_train"]), where)}
    ys["y_test"] = _labels("y_test", y_test, len(xs["x_test"]), where)

    train_set, test_set = np.unique(ys["y_train"]), np.unique(ys["y_test"])
    k = len(train_set)
    if not np.array_equal(train_set, np.arange(k)):
        missing = sorted(set(range(int(train_set[-1]) + 1)) - set(train_set.tolist()))
        raise DataError(
            f"{where}: y_train labels must be the integers 0..K-1 with every class present; "
            f"labels go up to {train_set[-1]} but {_few(missing)} never occur"
        )
    if not np.array_equal(train_set, test_set):
        only_train = sorted(set(train_set.tolist()) - set(test_set.tolist()))
        only_test = sorted(set(test_set.tolist()) - set(train_set.tolist()))
        raise DataError(
            f"{where}: train and test label sets differ (only in train: {_few(only_train)}; "
            f"only in test: {_few(only_test)}); both must hold the same classes 0..{k - 1}"
        )
    if classes is None:
        names = tuple(str(i) for i in range(k))
    else:
        names = tuple(str(c) for c in classes)
        if len(names) != k:
            raise DataError(
                f"{where}: {len(names)} class names given for {k} classes in the labels"
            )
    return ImageSet(name, xs["x_train"], ys["y_train"], xs["x_test"], ys["y_test"], names)


def _images(key: str, x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(
            f"{where}: {key} has dtype {x.dtype}; expected uint8 images with values 0..255"
        )
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise DataError(
            f"{where}: {key} has shape {x.shape}; expected (N, H, W, C) or (N, H, W) for grayscale"
        )
    if x.shape[-1] not in (1, 3):
        hint = " (it looks like (N, C, H, W): move channels last)" if x.shape[1] in (1, 3) else ""
        raise DataError(
            f"{where}: {key} has shape {x.shape}; expected channels last, (N, H, W, C) "
            f"with C 1 or 3{hint}"
        )
    return x


def _labels(key: str, y: np.ndarray, n: int, where: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {key} has dtype {y.dtype}; expected integer class labels 0..K-1")
    if y.ndim != 1:
        raise DataError(f"{where}: {key} has shape {y.shape}; expected one label per image, ({n},)")
    if len(y) != n:
        raise DataError(
            f"{where}: {key} has {len(y)} labels but x_{key[2:]} has {n} images; lengths must match"
        )
    if n == 0:
        raise DataError(f"{where}: {key} is empty; expected at least one sample")
    if y.min() < 0:
        raise DataError(f"{where}: {key} has negative labels ({y.min()}); expected 0..K-1")
    return y.astype(np.int64)


def _few(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:10])
    return (shown + (", ..." if len(values) > 10 else "")) or "none"


def read_npz(path: Path, name: str) -> ImageSet:
    """An `ImageSet` from a .npz with keys x_train, y_train, x_test, y_test (and maybe classes)."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read as .npz ({err}); {NPZ_FORMAT}") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not named arrays; {NPZ_FORMAT}")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(
                f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(npz.files)}); "
                f"{NPZ_FORMAT}"
            )
        try:
            arrays = {k: npz[k] for k in NPZ_KEYS}
            classes = npz["classes"].tolist() if "classes" in npz.files else None
        except ValueError as err:  # object arrays need pickle, which a data file never should
            raise DataError(f"{path}: {err}; {NPZ_FORMAT}") from err
    return image_set(name, **arrays, classes=classes, where=str(path))


def empty_images(shape: tuple[int, int, int, int], where: str) -> np.ndarray:
    """Room for uint8 NHWC images, refused up front when it exceeds this machine's memory
    (a large data.resize would otherwise fail half-way, or take the machine down)."""
    need = int(np.prod(shape, dtype=np.float64))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > memory:
        n, h, w, c = shape
        raise DataError(
            f"{where}: {n} images of {h}x{w}x{c} need {need / 2**30:.0f} GiB, more than this "
            f"machine's {memory / 2**30:.0f} GiB; use a smaller data.resize"
        )
    return np.empty(shape, dtype=np.uint8)


def resize_images(x: np.ndarray, size: tuple[int, int], where: str) -> np.ndarray:
    """Resize uint8 NHWC images to (H, W) with antialiased bilinear filtering, in chunks."""
    if x.shape[1:3] == tuple(size):
        return x
    out = empty_images((len(x), *size, x.shape[-1]), where)
    src = shared_tensor(x)
    for start in range(0, len(x), 4096):
        chunk = src[start : start + 4096].permute(0, 3, 1, 2).float()
        scaled = F.interpolate(chunk, size=size, mode="bilinear", antialias=True)
        scaled = scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start : start + 4096] = scaled.numpy()
    return out
