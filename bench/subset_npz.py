"""Cut a CPU pilot's data set: the first N training images of an `.npz` data set, per class
in equal shares, with its whole test set, written as a new `.npz` whose name says so.

A pilot on CPU cannot train CIFAR-10's 45,000 images for 30 epochs; a study on the cut file
names it (`data.dataset`, stored with the study and printed in every report), so no row of
it can pass for the full protocol. Classes keep equal shares so that the validation split,
drawn from the cut, stays stratified.

    python bench/subset_npz.py ../shared/data/cifar10.npz 5000 runs/data/cifar10_5k.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def first_per_class(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first n // classes images of every class, in the file's order."""
    classes = np.unique(labels)
    share = n // len(classes)
    picked = [np.flatnonzero(labels == c)[:share] for c in classes]
    if any(len(p) < share for p in picked):
        raise SystemExit(f"fewer than {share} training images in some class; choose a smaller N")
    return np.sort(np.concatenate(picked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help=".npz with x_train, y_train, x_test, y_test")
    parser.add_argument("images", type=int, help="training images to keep")
    parser.add_argument("target", type=Path, help="the .npz to write")
    args = parser.parse_args()
    with np.load(args.source) as data:
        keep = first_per_class(data["y_train"], args.images)
        arrays = {
            "x_train": data["x_train"][keep],
            "y_train": data["y_train"][keep],
            "x_test": data["x_test"],
            "y_test": data["y_test"],
        }
    args.target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.target, **arrays)
    print(f"{args.target}: {len(keep):,} training images, {len(arrays['y_test']):,} test images")


if __name__ == "__main__":
    main()
