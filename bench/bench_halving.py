"""Successive halving (ASHA) against none on `mnist_budget_1_5k` with short epochs: the best
validation accuracy each finds, and the compute halving spends.

Per seed, the same study runs twice, `--pruner none` and `--pruner asha`, side by side (one
after the other). Both use the random sampler with that seed, so both propose the same
configurations in the same order and train each with the same seed: the comparison isolates
what halving keeps and what it throws away. (With TPE the arms would diverge after the first
pruned trial, mixing sampler effects into the result.) Compute is counted in trained epochs
(a pruned trial's up to its rung) and, as a check, in trial-phase wall time.

Halving needs every epoch validated; first, what that costs: one pass over the full MNIST
validation split (6,000 images) against one training epoch (54,000), for the preset's
baseline on 1 thread, as a trial of `--parallel 2` runs it.

    python bench/bench_halving.py [--images 12000] [--epochs 6] [--trials 12] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import interleaved_medians, load_average, load_baseline, machine, table
from optuna.trial import TrialState
from searches import mnist_subset, run_study, space_file

from trainer.data import DeviceData
from trainer.models.net import Net
from trainer.train import channels_last_pays, evaluate, train


def validation_cost() -> float:
    """Seconds of one validation pass over one training epoch's, baseline, 1 thread."""
    base = load_baseline("mnist_budget_1_5k")
    splits = base.splits
    torch.set_num_threads(1)
    layout = channels_last_pays(base.arch(), torch.device("cpu"), 1)  # as the trainer picks
    model = Net(base.arch(), base.in_shape, splits.num_classes)
    model = model.to(memory_format=torch.channels_last if layout else torch.contiguous_format)
    val = DeviceData(splits.x_val, splits.y_val, splits.mean, splits.std, "cpu", layout)
    part = replace(splits, x_train=splits.x_train[:10240], y_train=splits.y_train[:10240])

    def evaluation() -> float:
        start = time.perf_counter()
        evaluate(model, val)
        return time.perf_counter() - start

    def epoch() -> float:  # the trainer's own clock, scaled to the whole training split
        rate = train(base.spec, part, threads=1, latency_runs=2).images_per_second
        return len(splits.y_train) / rate

    times = interleaved_medians({"evaluation": evaluation, "epoch": epoch}, repeats=3)
    return times["evaluation"] / times["epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--reduction", type=int, default=3)
    args = parser.parse_args()
    print(machine(), f"| load at start {load_average()}")
    print(f"one validation pass = {validation_cost():.1%} of one training epoch", flush=True)
    rows, fractions, gains = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = mnist_subset(folder, args.images)
        pruner = {"kind": "none", "min_epochs": args.min_epochs, "reduction": args.reduction}
        space = space_file(
            folder,
            "mnist_budget_1_5k",
            data,
            train__epochs=args.epochs,
            search__sampler="random",
            search__pruner=pruner,
        )
        common = ["--trials", str(args.trials), "--parallel", str(args.parallel)]
        for seed in args.seeds:
            runs = {}
            for kind in ("none", "asha"):
                name = f"{kind}-{seed}"
                runs[kind] = run_study(
                    space, name, folder / name, *common, "--seed", str(seed), "--pruner", kind
                )
                print(f"{name}: done, load {load_average()}", flush=True)
            full, asha = runs["none"], runs["asha"]
            epochs = {k: r.epochs_trained(args.epochs) for k, r in runs.items()}
            fraction = epochs["asha"] / epochs["none"]
            gain = asha.best_accuracy() - full.best_accuracy()
            fractions.append(fraction)
            gains.append(gain)
            rows.append(
                [
                    seed,
                    full.best_accuracy(),
                    asha.best_accuracy(),
                    gain * 100,
                    len(asha.trials(TrialState.PRUNED)),
                    f"{epochs['asha']} / {epochs['none']}",
                    fraction,
                    asha.trial_seconds / full.trial_seconds,
                ]
            )
    headers = [
        "seed",
        "best val acc, none",
        "best val acc, asha",
        "asha - none (points)",
        "pruned",
        "epochs asha / none",
        "compute fraction",
        "trial time fraction",
    ]
    print(table(headers, rows))
    print(
        f"mean compute fraction {statistics.mean(fractions):.3f}; accuracy difference "
        f"{min(gains) * 100:+.2f} to {max(gains) * 100:+.2f} points; load at end {load_average()}"
    )


if __name__ == "__main__":
    main()
