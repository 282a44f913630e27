"""Fused groups on CPU: K trials trained as one `train_group` against the same K trials
trained one after another by `train`.

The MNIST ~1.5K baseline of the preset (depthwise + GAP, fitted to 1,500 parameters) at its
real shapes (28x28x1, batch 64, crop padding 2), synthetic uint8 images, one thread, K
paired seeds of the same configuration. For each K: training images/s of the group, summed
over its members, on the trainer's own clock (setup, validation and latency excluded), and
the wall time of the whole `train_group` call against K `train` calls. Separate calls do not
depend on K, so they are timed once per round as one call and multiplied by K. Also the
time a fused step spends concatenating the members' weights (the price of keeping every
member's parameters its own), against the step. Variants run interleaved after a warm-up
round; each figure is the median of the repeats.

    python bench/bench_fused.py [--members 1 2 3 4 8] [--images 1920] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
import torch
from common import interleaved_samples, load_average, machine, table

import spaces
from trainer.budget import resolve_arch
from trainer.data import Splits
from trainer.models.net import Net
from trainer.spec import TrialSpec
from trainer.train import Result, train, train_group

# The shape of each data set a preset may name: (height, width, channels).
SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def synthetic_splits(dataset: str, images: int, classes: int = 10) -> Splits:
    """Random uint8 images of `dataset`'s shape: speed does not depend on the pixels."""
    rng = np.random.default_rng(0)
    shape = SHAPES[dataset]
    x = rng.integers(0, 256, (images, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, images).astype(np.int64)
    val_x, val_y = x[:256], y[:256]
    channels = shape[-1]
    return Splits(
        x_train=x,
        y_train=y,
        x_val=val_x,
        y_val=val_y,
        x_test=val_x,
        y_test=val_y,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        classes=tuple(map(str, range(classes))),
    )


def baseline(preset: str, epochs: int = 1) -> tuple[TrialSpec, str]:
    """The preset's baseline trial (its `baseline:` techniques), and its data set's name."""
    space = spaces.load(preset)
    spec = space.replay(space.baseline_params())
    return replace(spec, train=replace(spec.train, epochs=epochs)), space.data.dataset


def seeds(spec: TrialSpec, k: int) -> list[TrialSpec]:
    return [replace(spec, seed=s) for s in range(k)]


def group_rate(results: list[Result | Exception]) -> float:
    """A group's training images/s: its members' own rates summed (each is its images over
    the group's time)."""
    rates = []
    for r in results:
        if not isinstance(r, Result):
            raise r
        rates.append(r.images_per_second)
    return sum(rates)


def concatenation_seconds(spec: TrialSpec, splits: Splits, k: int, reps: int = 200) -> float:
    """Seconds per step that the fused leaves spend concatenating K members' tensors: every
    parameter (forward, and its gradient sliced back in the backward pass) and every float
    buffer, plus the copy of the running statistics back into each member."""
    arch = resolve_arch(spec, splits.image_shape, splits.num_classes).arch
    models = []
    for s in range(k):
        torch.manual_seed(s)
        models.append(Net(arch, splits.image_shape, splits.num_classes))
    names = [n for n, _ in models[0].named_parameters()]
    params = [[m.get_parameter(n) for m in models] for n in names]
    buffers = [
        [m.get_buffer(n) for m in models]
        for n, b in models[0].named_buffers()
        if b.is_floating_point()
    ]
    grads = [torch.ones(sum(p.numel() for p in ps)).view(-1) for ps in params]
    start = time.perf_counter()
    for _ in range(reps):
        cats = [torch.cat([p.view(-1) for p in ps]) for ps in params]
        torch.autograd.backward(cats, grads)
        with torch.no_grad():
            for bs in buffers:
                fused = torch.cat(bs)
                for b, chunk in zip(bs, fused.chunk(k), strict=True):
                    b.copy_(chunk)
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mnist_budget_1_5k")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 3, 4, 8])
    parser.add_argument("--images", type=int, default=1920, help="training images per member")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec, dataset = baseline(args.preset)
    splits = synthetic_splits(dataset, args.images)
    print(f"machine: {machine()}\nload before: {load_average()}\n", flush=True)

    walls: dict[str, list[float]] = {}

    def timed(key: str, run) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        rate = run()
        walls.setdefault(key, []).append(time.perf_counter() - start)
        return rate

    def alone() -> float:
        return train(spec, splits, threads=args.threads, latency_runs=2).images_per_second

    def fused(k: int):  # type: ignore[no-untyped-def]
        return lambda: group_rate(
            train_group(seeds(spec, k), splits, threads=args.threads, latency_runs=2)
        )

    measures = {"alone": lambda: timed("alone", alone)}
    for k in args.members:
        measures[f"K={k}"] = lambda k=k: timed(f"K={k}", fused(k))
    samples = interleaved_samples(measures, args.repeats)
    warm = {key: values[1:] for key, values in walls.items()}  # the warm-up round dropped
    single = statistics.median(samples["alone"])
    single_wall = statistics.median(warm["alone"])

    rows = []
    for k in args.members:
        rate = statistics.median(samples[f"K={k}"])
        wall = statistics.median(warm[f"K={k}"])
        step = k * spec.train.batch_size / rate
        cat = concatenation_seconds(spec, splits, k) if k > 1 else 0.0
        rows.append(
            [
                k,
                rate,
                rate / single,
                f"{min(samples[f'K={k}']):,.0f}-{max(samples[f'K={k}']):,.0f}",
                wall,
                k * single_wall,
                k * single_wall / wall,
                step * 1e3,
                cat * 1e3,
                f"{100 * cat / step:.1f}%",
            ]
        )
    headers = ["K", "images/s (sum)", "x alone", "range", "group wall s", "K calls wall s"]
    headers += ["x (wall)", "ms/step", "cat ms/step", "cat share"]
    print(
        f"{args.preset} baseline, batch {spec.train.batch_size}, {args.images} images per "
        f"member, {args.threads} thread(s); alone: {single:,.0f} images/s "
        f"(range {min(samples['alone']):,.0f}-{max(samples['alone']):,.0f}), "
        f"{single_wall:.2f} s per call; medians of {args.repeats} interleaved repeats\n"
    )
    print(table(headers, rows))
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
