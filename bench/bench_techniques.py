"""What each technique costs on the preset baselines.

Table 1: training images/s of `trainer.train` on the baseline (depthwise + GAP, fitted to
the preset budget) and on the baseline plus each training technique (default
hyperparameters) and each remaining architecture technique (re-fitted to the budget), with
forward FLOPs. Expected: SAM about 2x the time; mixup, cutout, label smoothing under 10%;
BlurPool and SE about what their FLOPs say.

Batch-1 latency of 3x3 against depthwise at equal parameters, over several budgets, is
bench/bench_speed.py.

    python bench/bench_techniques.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse

from common import (
    PRESETS,
    Baseline,
    flops_of,
    interleaved_medians,
    load_average,
    load_baseline,
    machine,
    subset,
    table,
    trainer_rate,
)

from trainer.measure import count_params
from trainer.models.net import Net
from trainer.spec import TrialSpec
from trainer.techniques import REGISTRY

THREADS = 2


def variants(base: Baseline) -> dict[str, TrialSpec]:
    """The baseline, 3x3 convs instead of depthwise, and the baseline + each other technique."""
    out = {"baseline": base.spec, "3x3 (no depthwise)": base.variant(drop=["depthwise"])}
    for name in REGISTRY:
        if name not in base.spec.techniques:
            out[f"+ {name}"] = base.variant(add={name: {}})
    return out


def cost_table(base: Baseline, images: int, repeats: int) -> list[list[object]]:
    specs = variants(base)
    splits = subset(base.splits, images)
    rates = interleaved_medians(
        {k: (lambda s=s: trainer_rate(s, splits, THREADS)) for k, s in specs.items()}, repeats
    )
    flops = {k: flops_of(base.arch(s), base.in_shape) for k, s in specs.items()}
    rows: list[list[object]] = []
    for name, spec in specs.items():
        arch = base.arch(spec)
        params = count_params(Net(arch, base.in_shape, base.splits.num_classes))
        rows.append(
            [
                name,
                params,
                flops[name] / 1e6,
                flops[name] / flops["baseline"],
                rates[name],
                rates["baseline"] / rates[name],
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsets, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    sizes = {"mnist_budget_1_5k": 5120, "cifar_budget_140k": 1024}
    if args.quick:
        sizes = {k: v // 4 for k, v in sizes.items()}

    print(f"machine: {machine()}\nload before: {load_average()}\n")
    for preset in PRESETS:
        base = load_baseline(preset)
        rows = cost_table(base, sizes[preset], repeats)
        print(
            f"### {base.label}: one epoch over {sizes[preset]:,} images, threads={THREADS}, "
            f"median of {repeats} interleaved repeats (load {load_average()})\n"
        )
        headers = ["variant", "params", "MFLOPs", "FLOPs x", "images/s", "time x"]
        print(table(headers, rows) + "\n", flush=True)
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
