"""Trials per hour with 2 trials at once on 2 cores (1 thread each) against 1 at a time
(2 threads), through `search run` as a user runs it.

Both arms run the same study: the same MNIST subset, the random sampler and the same seed,
so they train the same configurations; arms alternate, so load drift hits both alike.
Throughput counts the trial phase (first trial asked for to last one finished), so Ray's
start and the data load are not counted; the whole command's wall time is printed too.

    python bench/bench_concurrency.py [--images 8000] [--epochs 2] [--trials 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import load_average, machine, table
from searches import mnist_subset, run_study, space_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(machine(), f"| load at start {load_average()}")
    per_hour: dict[int, list[float]] = {1: [], 2: []}
    walls: dict[int, list[float]] = {1: [], 2: []}
    configurations: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = mnist_subset(folder, args.images)
        space = space_file(
            folder, "mnist_budget_1_5k", data, train__epochs=args.epochs, search__sampler="random"
        )
        for repeat in range(args.repeats):
            for parallel in (1, 2):
                name = f"p{parallel}-{repeat}"
                run = run_study(
                    space, name, folder / name, "--trials", str(args.trials),
                    "--parallel", str(parallel),
                )  # fmt: skip
                per_hour[parallel].append(args.trials / run.trial_seconds * 3600)
                walls[parallel].append(run.wall)
                configurations[parallel] = sorted(str(t.params) for t in run.trials())
                print(
                    f"{name}: {run.trial_seconds:.0f} s of trials, {run.wall:.0f} s wall, "
                    f"load {load_average()}",
                    flush=True,
                )
    same = configurations[1] == configurations[2]
    one, two = (statistics.median(per_hour[p]) for p in (1, 2))
    rows = [
        [p, 2 // p, statistics.median(per_hour[p]), len(per_hour[p]), statistics.median(walls[p])]
        for p in (1, 2)
    ]
    headers = ["trials at once", "threads each", "trials/hour (median)", "runs", "wall s (median)"]
    print(table(headers, rows))
    print(f"2 at once / 1 at a time: {two / one:.2f}x; same configurations in both: {same}")
    print(f"load at end {load_average()}")


if __name__ == "__main__":
    main()
