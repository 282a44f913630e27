"""The embedded digits set and the standard torchvision sets, read in torchvision's layouts.

Standard sets are opened through `torchvision.datasets` (download only when asked) and
converted from their `.data`/`.targets` attributes in one array operation each, never
through per-sample `__getitem__`. CIFAR may instead be a `cifar10.npz`/`cifar100.npz` in the
data folder, because torchvision's pickles carry MD5 checks that arrays cannot be turned back
into.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.arrays import image_set, read_npz
from trainer.data.base import DataError, ImageSet
from trainer.data.split import stratified_indices

# scikit-learn's digits have no official test split; this fixed, stratified 20% is ours.
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def load_digits() -> ImageSet:
    """scikit-learn's 8x8 digits (1797 images, shipped inside the package, no download).

    Pixel values 0..16 are scaled to 0..255; a seeded stratified 20% becomes the test set.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    train, test = stratified_indices(y, 10, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED, what="test")
    names = [str(n) for n in bunch.target_names]
    return image_set("digits", x[train], y[train], x[test], y[test], names, where="digits")


@dataclass(frozen=True)
class Standard:
    """A torchvision data set: its class's name in `torchvision.datasets`, the files it needs
    under the data folder, and an optional .npz alternative next to them. The class is looked
    up when a set is opened: importing torchvision doubles the start-up of every `search`
    process and Ray worker (torch._dynamo, sympy), most of which never read a standard set."""

    name: str
    cls: str
    files: tuple[str, ...]
    npz: str | None = None
    split_arg: bool = False  # SVHN takes split="train"/"test" instead of train=True/False

    def open(self, root: Path, *, train: bool, download: bool) -> Any:
        """The torchvision data set object for one split."""
        split = {"split": "train" if train else "test"} if self.split_arg else {"train": train}
        cls = getattr(importlib.import_module("torchvision.datasets"), self.cls)
        return cls(root=str(root), download=download, **split)

    def layout(self) -> str:
        alt = f", or {self.npz}" if self.npz else ""
        return f"{self.files[0]} and {len(self.files) - 1} more (torchvision's layout){alt}"


_MNIST_FILES = tuple(
    f"raw/{p}-{k}" for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")
)
STANDARD = {
    s.name: s
    for s in (
        Standard("mnist", "MNIST", tuple(f"MNIST/{f}" for f in _MNIST_FILES)),
        Standard("fashionmnist", "FashionMNIST", tuple(f"FashionMNIST/{f}" for f in _MNIST_FILES)),
        Standard("kmnist", "KMNIST", tuple(f"KMNIST/{f}" for f in _MNIST_FILES)),
        Standard(
            "cifar10",
            "CIFAR10",
            tuple(
                f"cifar-10-batches-py/{f}"
                for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
            ),
            npz="cifar10.npz",
        ),
        Standard(
            "cifar100",
            "CIFAR100",
            tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
            npz="cifar100.npz",
        ),
        Standard("svhn", "SVHN", ("train_32x32.mat", "test_32x32.mat"), split_arg=True),
    )
}


def standard_inputs(spec: Standard, root: Path) -> list[Path]:
    """The files this set will be read from, or a DataError naming what is missing where."""
    if spec.npz and (root / spec.npz).is_file():
        return [root / spec.npz]
    missing = [f for f in spec.files if not (root / f).is_file()]
    if missing:
        if len(missing) == len(spec.files):
            raise DataError(
                f"{spec.name} was not found in {root}: expected {spec.layout()}. Point "
                "--data-dir at the folder holding it, or use --download"
            )
        raise DataError(
            f"{spec.name} is incomplete in {root}: missing {', '.join(missing[:2])}"
            f"{', ...' if len(missing) > 2 else ''}. Point --data-dir at a complete copy"
        )
    return [root / f for f in spec.files]


def load_standard(spec: Standard, root: Path) -> ImageSet:
    """Read a standard set from `root` (`standard_inputs` has checked the files are there)."""
    if spec.npz and (root / spec.npz).is_file():
        data = read_npz(root / spec.npz, spec.name)
        if spec.name == "cifar10" and data.classes == tuple(str(i) for i in range(10)):
            data = replace(data, classes=CIFAR10_CLASSES)  # the npz carries no names
        return data
    parts = []
    for train in (True, False):
        try:
            ds = spec.open(root, train=train, download=False)
        except RuntimeError as err:  # torchvision's "not found or corrupted" (MD5 mismatch)
            raise DataError(
                f"{spec.name} in {root} failed torchvision's check ({str(err)[:60]}); expected "
                f"{spec.layout()}. Point --data-dir at a good copy"
            ) from err
        parts.append(_arrays(ds))
    (x_train, y_train, classes), (x_test, y_test, _) = parts
    return image_set(spec.name, x_train, y_train, x_test, y_test, classes, where=str(root))


def _arrays(ds: Any) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """uint8 NHWC images, labels and class names from a torchvision set's attributes."""
    from torchvision.datasets import SVHN  # imported by `Standard.open` already

    x = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
    if isinstance(ds, SVHN):
        x = x.transpose(0, 2, 3, 1)  # SVHN keeps (N, C, H, W)
        y = np.asarray(ds.labels)
    else:
        y = ds.targets.numpy() if hasattr(ds.targets, "numpy") else np.asarray(ds.targets)
    return np.ascontiguousarray(x), y.astype(np.int64), getattr(ds, "classes", None)
