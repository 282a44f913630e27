"""TPE against random sampling: the hypervolume of the Pareto front after 32 TPE trials and
after 64 random ones, on a short MNIST space, over several seeds.

The space is `mnist_budget_1_5k` on an MNIST subset with few epochs, with the objectives
accuracy (maximised) and batch-1 latency (minimised); the parameter count is no objective,
since budget scaling lands every configuration within 2% of 1,500. Hypervolume is Optuna's
exact WFG computation on (1 - accuracy, latency ms) against one fixed reference point for
all runs: (1.0, 1.1 x the largest latency of any trial), printed with the result (a
hypervolume means nothing without its reference point, optuna/optuna#4748). Latency is
measured while trials run, so a loaded machine inflates it for both samplers alike.

    python bench/bench_sampler.py [--images 4000] [--epochs 2] [--seeds 0 1 2 3 4]
        [--tpe 32] [--random 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from common import load_average, machine, table
from optuna.trial import TrialState
from searches import Run, mnist_subset, run_study, space_file

from search.report.hypervolume import hypervolume


def points(run: Run) -> np.ndarray:
    """(accuracy, latency ms) of every complete trial."""
    trials = run.trials(TrialState.COMPLETE)
    return np.array([[t.values[0], t.values[1]] for t in trials])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tpe", type=int, default=32, help="TPE trials")
    parser.add_argument("--random", type=int, default=64, help="random trials")
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    print(machine(), f"| load at start {load_average()}")
    runs: dict[tuple[str, int], Run] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = mnist_subset(folder, args.images)
        for sampler, trials in (("tpe", args.tpe), ("random", args.random)):
            space = space_file(
                folder,
                "mnist_budget_1_5k",
                data,
                train__epochs=args.epochs,
                search__sampler=sampler,
                search__objectives=["accuracy", "latency_ms"],
            )
            for seed in args.seeds:
                name = f"{sampler}-{seed}"
                runs[sampler, seed] = run_study(
                    space, name, folder / name, "--trials", str(trials), "--seed", str(seed),
                    "--parallel", str(args.parallel), "--pruner", "none",
                )  # fmt: skip
                print(f"{name}: done, load {load_average()}", flush=True)
    reference = [0.0, 1.1 * max(points(r)[:, 1].max() for r in runs.values())]
    volume = {
        key: hypervolume(points(run), ["accuracy", "latency_ms"], reference)
        for key, run in runs.items()
    }
    pairs = [(seed, volume["tpe", seed], volume["random", seed]) for seed in args.seeds]
    rows = [[seed, tpe, rand, tpe >= rand] for seed, tpe, rand in pairs]
    print(table(["seed", f"HV, {args.tpe} TPE", f"HV, {args.random} random", "TPE >="], rows))
    print(
        f"reference point (accuracy, latency ms) = ({reference[0]:.1f}, {reference[1]:.4f}); "
        f"median HV TPE {statistics.median(p[1] for p in pairs):.5f}, "
        f"random {statistics.median(p[2] for p in pairs):.5f}; "
        f"TPE >= random in {sum(r[-1] for r in rows)} of {len(rows)} seeds; "
        f"load at end {load_average()}"
    )


if __name__ == "__main__":
    main()
