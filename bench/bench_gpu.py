"""Fused groups on one GPU, in one run of at most ten minutes.

Three sections, each a table (also written as JSON lines to `--out`):
  single  one trial by `trainer.train` against a bare loop of the same network (data on
          the device, bf16 autocast, channels_last, plain SGD and cross-entropy), for the
          CIFAR-10 140K and MNIST 1.5K baselines;
  groups  `train_group` of K paired seeds, K = 1, 3, 8, 16, 32, for both baselines:
          training images/s summed over the members (the trainer's clock) and against one
          trial alone;
  design  each preset's paper design at 3 seeds, study-wide: its trials grouped by the rule
          (`trainer.group`, at most `--max-members` a group), one `train_group` call per
          group, against every trial trained alone by `train`, both one after another in
          this process; images/s over the whole design on the wall clock, so every trial's
          set-up, validation and latency measurement count.
Images are synthetic uint8 tensors of each data set's shape (speed does not depend on the
pixels; CIFAR-10 does not fit one transfer to the GPU machine). Each measurement is preceded
by a short untimed run of the same shapes (CUDA context, kernels, allocator). A deadline
(`--budget`, seconds) skips what is left rather than overrun the device call.

There (torch on the machine, optuna from the bundle: ../shared/gpu/README.md), with `.gpu`
carried and `cp ../shared/gpu/on-gpu.sh .gpu/` done here first:
    bash .gpu/on-gpu.sh python3 bench/bench_gpu.py --out "$OUT"
A dry run here: python bench/bench_gpu.py --device cpu --quick [--sections groups]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_fused import baseline, group_rate, seeds, synthetic_splits
from common import table

import spaces
from search import ablate
from trainer.budget import resolve_arch, resolve_archs
from trainer.data import DeviceData, Splits
from trainer.group import group_key
from trainer.models.net import Net
from trainer.spec import TrialSpec
from trainer.train import Result, train_group

PRESETS = ("cifar_budget_140k", "mnist_budget_1_5k")
MEMBERS = (1, 3, 8, 16, 32)
# Training images per member and measurement: 40 steps of the preset's batch.
STEPS = 40


class Bench:
    """The run's device, deadline and output."""

    def __init__(self, device: str, budget: float, out: Path | None, quick: bool) -> None:
        self.device, self.quick = device, quick
        self.deadline = time.monotonic() + budget
        self.out = out
        self.rows: dict[str, list[list[object]]] = defaultdict(list)

    def time_left(self, section: str, what: str) -> bool:
        if time.monotonic() < self.deadline:
            return True
        self.rows[section].append([what, "skipped: out of time"])
        return False

    def emit(self, section: str, row: list[object], **record: object) -> None:
        self.rows[section].append(row)
        print(section, json.dumps(record), flush=True)
        if self.out is not None:
            with open(self.out / "bench_gpu.jsonl", "a") as f:
                f.write(json.dumps({"section": section, **record}) + "\n")

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def data_for(preset: str, quick: bool) -> tuple[TrialSpec, Splits]:
    spec, dataset = baseline(preset)
    steps = 2 if quick else STEPS
    return spec, synthetic_splits(dataset, steps * spec.train.batch_size)


def bare_rate(bench: Bench, spec: TrialSpec, splits: Splits) -> float:
    """Images/s of the minimal loop: the same net, no augmentation, no technique slots."""
    device = torch.device(bench.device)
    arch = resolve_arch(spec, splits.image_shape, splits.num_classes).arch
    data = DeviceData(splits.x_train, splits.y_train, splits.mean, splits.std, device, True)
    torch.manual_seed(0)
    net = Net(arch, splits.image_shape, splits.num_classes)
    net = net.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batch = spec.train.batch_size

    def epoch() -> int:
        images = 0
        for x, y in data.batches(batch, shuffle=True, drop_last=True):
            with amp:
                loss = F.cross_entropy(net(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(x)
        return images

    epoch()  # warm-up
    bench.sync()
    start = time.perf_counter()
    images = epoch()
    bench.sync()
    return images / (time.perf_counter() - start)


def run_group(bench: Bench, specs: list[TrialSpec], splits: Splits) -> float:
    return group_rate(train_group(specs, splits, device=bench.device, latency_runs=2))


def single(bench: Bench) -> None:
    for preset in PRESETS:
        if not bench.time_left("single", preset):
            continue
        spec, splits = data_for(preset, bench.quick)
        run_group(bench, [spec], splits)  # warm-up
        trainer = run_group(bench, [spec], splits)
        bare = bare_rate(bench, spec, splits)
        bench.emit(
            "single",
            [preset, trainer, bare, trainer / bare],
            preset=preset,
            trainer=round(trainer),
            bare=round(bare),
        )


def groups(bench: Bench) -> None:
    for preset in PRESETS:
        spec, splits = data_for(preset, bench.quick)
        alone = None
        for k in (1, 2) if bench.quick else MEMBERS:
            if not bench.time_left("groups", f"{preset} K={k}"):
                continue
            warm = replace(splits, x_train=splits.x_train[: 2 * spec.train.batch_size])
            try:
                run_group(bench, seeds(spec, k), warm)  # warm-up: the same shapes, two steps
                rate = run_group(bench, seeds(spec, k), splits)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                bench.emit("groups", [preset, k, "out of memory"], preset=preset, members=k)
                continue
            alone = rate if k == 1 else alone
            bench.emit(
                "groups",
                [preset, k, rate, rate / k, rate / alone if alone else "-"],
                preset=preset,
                members=k,
                images_per_second=round(rate),
            )


def design_specs(preset: str, seed_count: int) -> tuple[list[TrialSpec], Splits]:
    """Every trial of the preset's paper design, in its queue order."""
    space = spaces.load(preset)
    _, splits = data_for(preset, quick=False)
    design = ablate.make(space, "paper")
    queue = design.queue(space, ablate.seeds(0, seed_count))
    trials = [space.replay(params, seed=attrs["seed"]) for params, attrs in queue]
    return [replace(t, train=replace(t.train, epochs=1)) for t in trials], splits


def grouped(trials: list[TrialSpec], splits: Splits, most: int) -> list[list[TrialSpec]]:
    """The trials in groups by the rule, in queue order, at most `most` members each."""
    by_key: dict[object, list[TrialSpec]] = defaultdict(list)
    archs = resolve_archs(trials, splits.image_shape, splits.num_classes)
    for t, arch in zip(trials, archs, strict=True):
        by_key[group_key(t, arch)].append(t)
    return [g[i : i + most] for g in by_key.values() for i in range(0, len(g), most)]


def design(bench: Bench, most: int) -> None:
    for preset in PRESETS[1:] if bench.quick else PRESETS:
        trials, splits = design_specs(preset, 1 if bench.quick else 3)
        if bench.quick:
            splits = replace(splits, x_train=splits.x_train[:128], y_train=splits.y_train[:128])
        images = len(trials) * (len(splits.x_train) // trials[0].train.batch_size)
        images *= trials[0].train.batch_size
        arms = {"alone": [[t] for t in trials], "fused": grouped(trials, splits, most)}
        for arm, calls in arms.items():
            if not bench.time_left("design", f"{preset} {arm}"):
                continue
            bench.sync()
            start = time.perf_counter()
            try:
                results = [
                    r
                    for call in calls
                    for r in train_group(call, splits, device=bench.device, latency_runs=2)
                ]
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                bench.emit("design", [preset, arm, "out of memory"], preset=preset, arm=arm)
                continue
            bench.sync()
            wall = time.perf_counter() - start
            failed = sum(not isinstance(r, Result) for r in results)
            bench.emit(
                "design",
                [
                    preset,
                    arm,
                    len(trials),
                    len(calls),
                    images / wall,
                    wall,
                    failed,
                ],
                preset=preset,
                arm=arm,
                trials=len(trials),
                images_per_second=round(images / wall),
                wall_seconds=round(wall, 1),
                failed=failed,
            )


SECTIONS: dict[str, Callable[[Bench, argparse.Namespace], None]] = {
    "single": lambda bench, _: single(bench),
    "groups": lambda bench, _: groups(bench),
    "design": lambda bench, args: design(bench, args.max_members),
}
HEADERS = {
    "single": ["preset", "trainer images/s", "bare loop images/s", "trainer / bare"],
    "groups": ["preset", "K", "images/s (sum)", "per member", "x one alone"],
    "design": ["preset", "arm", "trials", "calls", "images/s", "wall s", "failed"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds before skipping")
    parser.add_argument("--max-members", type=int, default=32, help="largest design group")
    parser.add_argument("--out", type=Path, help="folder for bench_gpu.jsonl and bench_gpu.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a dry run")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    args = parser.parse_args()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.device, args.budget, args.out, args.quick)
    if args.device == "cuda":
        print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    for name in args.sections:
        SECTIONS[name](bench, args)
    report = "\n\n".join(
        f"### {name}\n\n{table(HEADERS[name], bench.rows[name])}" for name in args.sections
    )
    print("\n" + report)
    if args.out is not None:
        (args.out / "bench_gpu.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
