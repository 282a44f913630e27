"""Trainer throughput against the two loops it should beat or match, on the preset baselines.

For the MNIST ~1.5K and CIFAR-10 ~140K baselines (depthwise + GAP, fitted to their budgets),
training images/s on CPU of:
  - trainer: `trainer.train`, one epoch over a subset, its own clock (channels_last);
  - bare: the minimal hand-written loop over preloaded normalised float tensors, same model,
    batch size, SGD, per-image random crop (and flip for CIFAR), hard-label cross-entropy;
    channels_last and contiguous, to see what the trainer's channels_last buys;
  - DataLoader: the textbook torchvision pipeline, a Dataset whose `__getitem__` runs
    PIL -> RandomCrop(padding) [-> RandomHorizontalFlip] -> ToTensor -> Normalize per sample,
    0 and 2 worker processes (persistent, started in the warm-up round).
The trainer should be within 5% of the bare loop and at least 3x the DataLoader.

    python bench/bench_trainer.py [--quick] [--full-epoch] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from common import (
    PRESETS,
    Baseline,
    TextbookImages,
    interleaved_medians,
    load_average,
    load_baseline,
    machine,
    subset,
    table,
    trainer_rate,
)
from torch.utils.data import DataLoader
from torchvision import transforms

from trainer.models.net import Net
from trainer.spec import TrialSpec


def make_optimizer(model: torch.nn.Module, spec: TrialSpec) -> torch.optim.Optimizer:
    hp = spec.train
    return torch.optim.SGD(
        model.parameters(),
        lr=hp.lr,
        momentum=hp.momentum,
        weight_decay=hp.weight_decay,
        nesterov=hp.nesterov,
    )


def build_model(base: Baseline, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = Net(base.arch(), base.in_shape, base.splits.num_classes)
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def timed_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], object],
    images: int,
) -> float:
    """Images/s of one pass of plain SGD steps over `batches()`."""
    model.train()
    start = time.perf_counter()
    for x, y in batches():  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return images / (time.perf_counter() - start)


def bare_loop(base: Baseline, images: int, channels_last: bool) -> Callable[[], float]:
    """The minimal loop: the whole subset normalised and padded once as float32, then each
    batch is an index, a per-image crop by advanced indexing, and an optional flip."""
    spec, splits = base.spec, subset(base.splits, images)
    pad, batch = spec.train.crop_padding, spec.train.batch_size
    x = torch.from_numpy(np.ascontiguousarray(splits.x_train)).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    padded = F.pad((x - mean) / std, (pad,) * 4)
    y = torch.from_numpy(splits.y_train.astype(np.int64))
    n, c, h, w = x.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(base, channels_last)
    optimizer = make_optimizer(model, spec)

    def batches():
        order = torch.randperm(n)
        for start in range(0, n - n % batch, batch):
            idx = order[start : start + batch]
            dy, dx = torch.randint(0, 2 * pad + 1, (2, len(idx), 1))
            rows = (dy + torch.arange(h))[:, None, :, None]
            cols = (dx + torch.arange(w))[:, None, None, :]
            xb = padded[idx[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
            if spec.train.flip:
                flip = torch.rand(len(idx)) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            yield xb.contiguous(memory_format=fmt), y[idx]

    return lambda: timed_epoch(model, optimizer, batches, n - n % batch)


def dataloader_loop(base: Baseline, images: int, workers: int) -> Callable[[], float]:
    spec, splits = base.spec, subset(base.splits, images)
    _, h, _ = base.in_shape
    steps = [transforms.RandomCrop(h, padding=spec.train.crop_padding)]
    if spec.train.flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(splits.mean, splits.std)]
    data = TextbookImages(splits.x_train, splits.y_train, transforms.Compose(steps))
    loader = DataLoader(
        data,
        batch_size=spec.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    model = build_model(base, channels_last=False)
    optimizer = make_optimizer(model, spec)
    n = len(data) - len(data) % spec.train.batch_size
    return lambda: timed_epoch(model, optimizer, lambda: iter(loader), n)


def measure(base: Baseline, images: int, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    train_subset = subset(base.splits, images)
    measures = {
        "trainer": lambda: trainer_rate(base.spec, train_subset, threads),
        "bare (channels_last)": bare_loop(base, images, channels_last=True),
        "bare (contiguous)": bare_loop(base, images, channels_last=False),
        "DataLoader w=0": dataloader_loop(base, images, workers=0),
        "DataLoader w=2": dataloader_loop(base, images, workers=2),
    }

    def pinned(f: Callable[[], float]) -> Callable[[], float]:
        """`f` on `threads` threads (trainer_rate sets its own; the loops do not)."""

        def run() -> float:
            torch.set_num_threads(threads)
            return f()

        return run

    return interleaved_medians({k: pinned(f) for k, f in measures.items()}, repeats)


def full_epoch_seconds(base: Baseline, threads: int) -> float:
    """Wall time of `trainer.train`'s one full epoch on the real training split."""
    start = time.perf_counter()
    trainer_rate(base.spec, base.splits, threads, epochs=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsets, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--full-epoch", action="store_true", help="also time one full epoch of each baseline"
    )
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    # Images per timed epoch: enough steps to amortise start-up, few enough for 2 cores.
    sizes = {"mnist_budget_1_5k": 10240, "cifar_budget_140k": 1024}
    if args.quick:
        sizes = {k: v // 4 for k, v in sizes.items()}

    print(f"machine: {machine()}\nload before: {load_average()}\n")
    rows, epoch_rows = [], []
    for preset in PRESETS:
        base = load_baseline(preset)
        for threads in (2, 1):
            r = measure(base, sizes[preset], threads, repeats)
            best_bare = max(r["bare (channels_last)"], r["bare (contiguous)"])
            best_loader = max(r["DataLoader w=0"], r["DataLoader w=2"])
            ratios = (r["trainer"] / r["bare (channels_last)"], r["trainer"] / best_bare)
            rows.append(
                [
                    base.label,
                    threads,
                    sizes[preset],
                    *r.values(),
                    *ratios,
                    r["trainer"] / best_loader,
                ]
            )
            print(f"{base.label} threads={threads}: done (load {load_average()})", flush=True)
            if threads == 2:
                n = len(base.splits.x_train)
                measured = args.full_epoch
                seconds = full_epoch_seconds(base, 2) if measured else n / r["trainer"]
                epoch_rows.append([base.label, n, seconds, "measured" if measured else "estimated"])

    headers = ["baseline", "threads", "images", "trainer", "bare CL", "bare contig"]
    headers += ["DL w=0", "DL w=2", "trainer/bare CL", "trainer/best bare", "trainer/best DL"]
    print("\nTraining images/s (median of", repeats, "interleaved repeats)\n")
    print(table(headers, rows))
    print("\nOne full epoch of `trainer.train` (threads=2)\n")
    print(table(["baseline", "train images", "seconds", "how"], epoch_rows))
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
