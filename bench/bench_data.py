"""Input-pipeline throughput: `DeviceData.batches` against a textbook torchvision DataLoader.

Batches only, no model: this measures what the data side costs per image. Both pipelines do
the same work per batch: random crop with padding 4, random horizontal flip, normalisation
to float32, batch size 512. The textbook side is what most tutorials write: a data set whose
`__getitem__` makes a PIL image and runs `RandomCrop`, `RandomHorizontalFlip`, `ToTensor` and
`Normalize` per sample, batched by a DataLoader with 0 or 2 worker processes. MNIST uses
torchvision's own `MNIST` class; CIFAR-10 (provided as .npz, not torchvision's pickles) uses
a data set with the same `__getitem__` as torchvision's `CIFAR10`.

Also prints the one-off load time of each set: decoding from the original files, and a load
from the decoded-array cache. Each rate is the best of several repeats, because shared
machines are noisy.

    python bench/bench_data.py [--data-dir ../shared/data] [--images 20480] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from common import TextbookImages
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from trainer.data import DeviceData, Splits, load_dataset, make_splits
from trainer.data.load import CACHE_DIR_ENV, DATA_DIR_ENV, read_env

BATCH = 512
PADDING = 4
WARMUP_BATCHES = 2


def rate(
    make_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]], images: int
) -> float:
    """Images per second over `images` images, after a warm-up (worker start-up excluded)."""
    batches = make_batches()
    for _ in range(WARMUP_BATCHES):
        next(batches)
    seen = 0
    start = time.perf_counter()
    for x, _ in batches:
        seen += len(x)
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def best(make: Callable[[], Iterator], images: int, repeats: int) -> float:
    return max(rate(make, images) for _ in range(repeats))


def epochs(batches: Callable[[], Iterable]) -> Iterator:
    """Endless batches, so a measurement may run past one epoch of a small split."""
    while True:
        yield from batches()


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load_times(name: str, data_dir: Path) -> tuple[Splits, dict[str, float]]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ[CACHE_DIR_ENV] = ""
        _, decode = timed(lambda: load_dataset(name, data_dir))
        os.environ[CACHE_DIR_ENV] = cache
        _, first = timed(lambda: load_dataset(name, data_dir))
        data, cached = timed(lambda: load_dataset(name, data_dir))
        splits, split_s = timed(lambda: make_splits(data, val_fraction=0.1, seed=0))
    _, device_s = timed(lambda: DeviceData(splits.x_train, splits.y_train, splits.mean, splits.std))
    return splits, {
        "decode (no cache)": decode,
        "decode + write cache": first,
        "load from cache (mmap)": cached,
        "make_splits (val 10%)": split_s,
        "DeviceData(train)": device_s,
    }


def main() -> None:
    default_dir = (
        read_env(DATA_DIR_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir))
    parser.add_argument("--images", type=int, default=20480, help="images timed per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (on a busy machine 1 beats 2)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads, load = torch.get_num_threads(), os.getloadavg()[0]
    print(f"torch {torch.__version__}, {threads} threads, load average {load:.1f}")
    print(f"batch {BATCH}, crop padding {PADDING}, flip, {args.images} images per measurement\n")

    rows = []
    for name in ("mnist", "cifar10"):
        splits, times = load_times(name, args.data_dir)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))
        _, h, w = splits.image_shape
        device = DeviceData(splits.x_train, splits.y_train, splits.mean, splits.std)
        g = torch.Generator().manual_seed(0)
        ours = best(
            lambda d=device, g=g: epochs(
                lambda: d.batches(BATCH, generator=g, shuffle=True, crop_padding=PADDING, flip=True)
            ),
            args.images,
            args.repeats,
        )
        textbook = transforms.Compose(
            [
                transforms.RandomCrop((h, w), padding=PADDING),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(splits.mean, splits.std),
            ]
        )
        if name == "mnist":
            dataset: Dataset = datasets.MNIST(str(args.data_dir), train=True, transform=textbook)
        else:
            dataset = TextbookImages(splits.x_train, splits.y_train, textbook)
        results = {"DeviceData.batches": ours}
        for workers in (0, 2):
            loader = DataLoader(
                dataset,
                batch_size=BATCH,
                shuffle=True,
                num_workers=workers,
                persistent_workers=workers > 0,
            )
            results[f"DataLoader, {workers} workers"] = best(
                lambda ld=loader: epochs(lambda: ld), args.images, min(args.repeats, 2)
            )
        rows.append((name, results))

    print(f"\n{'data set':10s} {'pipeline':26s} {'images/s':>10s} {'DeviceData is':>14s}")
    for name, results in rows:
        for pipeline, r in results.items():
            ratio = results["DeviceData.batches"] / r
            print(f"{name:10s} {pipeline:26s} {r:10.0f} {ratio:13.1f}x")


if __name__ == "__main__":
    main()
