"""Sequential seeds (search/sequential.py) on simulated designs: the family-wise rate of false
verdicts when nothing has an effect, and what the seeds buy when something does, against
the fixed designs `--seeds 3` and `--seeds 8`.

Each simulated study is a design of m configurations against one reference, trained with
paired seeds: per seed, an accuracy of 0.85 plus a shift shared by every configuration of that
seed (sd 1 point) plus each one's own noise (sd `--noise`, 1 point), plus its true effect.
Effects are given in sds of a paired difference (noise * sqrt 2). No training runs: a minute.

    python bench/bench_sequential.py [--studies 20000] [--noise 0.01]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats

from search.sequential import PROCEDURE, Plan, simulate

PLAN = Plan(min_seeds=3, max_seeds=8)
FIXED = {"--seeds 3": Plan(3, 3), "--seeds 8": Plan(8, 8)}


def false_rates(studies: int, noise: float) -> None:
    print("\n## No true effect: studies with any false verdict (99% Clopper-Pearson)\n")
    print("| comparisons | plan | studies | false rate | 99% interval |")
    print("|---|---|---|---|---|")
    cases = [(1, PLAN), (7, PLAN), (10, PLAN), (7, Plan(3, 12)), (7, Plan(2, 6))]
    for m, plan in cases:
        n = studies * (5 if m == 1 else 1)
        sim = simulate(plan, [0.0] * m, studies=n, noise=noise, rng_seed=m)
        false = round(sim.false_rate * n)
        ci = stats.binomtest(false, n).proportion_ci(0.99)
        seeds = f"{plan.min_seeds}..{plan.max_seeds}"
        print(f"| {m} | {seeds} | {n:,} | {sim.false_rate:.4f} | {ci.low:.4f}-{ci.high:.4f} |")


def equal_effects(studies: int, noise: float) -> None:
    sd = noise * math.sqrt(2)
    print("\n## 7 comparisons, all with the same effect (in sds of a paired difference)\n")
    print(
        "| effect | auto: resolved | before max | seeds/comparison | trainings | "
        "--seeds 3: resolved | --seeds 8: resolved | resolved per 100 trainings: auto, 3, 8 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for effect in [0, 1, 1.5, 2, 3, 4]:
        sims = {
            name: simulate(plan, [effect * sd] * 7, studies=studies, noise=noise)
            for name, plan in {"auto": PLAN, **FIXED}.items()
        }
        auto = sims["auto"]
        per = ", ".join(f"{100 * s.resolved.sum() / s.trainings:.2f}" for s in sims.values())
        print(
            f"| {effect} | {auto.resolved.mean():.3f} | {auto.early.mean():.3f} | "
            f"{auto.seeds.mean():.2f} | {auto.trainings:.1f} | "
            f"{sims['--seeds 3'].resolved.mean():.3f} | {sims['--seeds 8'].resolved.mean():.3f} | "
            f"{per} |"
        )


def mixed(studies: int, noise: float) -> None:
    sd = noise * math.sqrt(2)
    effects = [4, 3, 2, 1.5, 1, 0, 0]
    print(f"\n## A mixed design: effects {effects} sds, per comparison\n")
    print("| design | resolved | seeds | trainings | resolved per 100 trainings |")
    print("|---|---|---|---|---|")
    designs = {
        "--seeds auto": PLAN,
        f"--seeds auto --min-effect {200 * sd:.1f} (2 sds)": Plan(3, 8, min_effect=2 * sd),
        **FIXED,
    }
    for name, plan in designs.items():
        sim = simulate(plan, [e * sd for e in effects], studies=studies, noise=noise)
        print(
            f"| {name} | {np.round(sim.resolved, 2).tolist()} | "
            f"{np.round(sim.seeds, 1).tolist()} | {sim.trainings:.1f} | "
            f"{100 * sim.resolved.sum() / sim.trainings:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=20_000)
    parser.add_argument("--noise", type=float, default=0.01, help="per-seed accuracy sd")
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"Procedure: {PROCEDURE}.")
    print(f"Plan: {PLAN.min_seeds}..{PLAN.max_seeds} seeds, alpha {PLAN.alpha} family-wise.")
    false_rates(args.studies, args.noise)
    equal_effects(args.studies // 4, args.noise)
    mixed(args.studies // 4, args.noise)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
