"""Contracts every technique and every preset must keep, derived from the registries.

The technique list comes from `REGISTRY`, so a newly registered technique is covered (and a
technique that trains but changes nothing fails) without anyone remembering to add it here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from pathlib import Path

import optuna
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import spaces
from trainer.budget import resolve_arch
from trainer.data import Splits, load_dataset, make_splits
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.techniques import REGISTRY
from trainer.train import Result, train

# -- every technique changes a short run --------------------------------------------------

# 8x8 digits -> 4x4 -> 2x2: small enough for a few seconds per run, big enough that the
# flatten head differs from GAP and BlurPool has something to blur.
TINY = TrialSpec(
    arch=ArchSpec(stages=(StageSpec(8), StageSpec(12)), stem_channels=4),
    # Two epochs, so SWA (averaging from epoch floor(0.75 * 2) = 1) averages after real steps.
    train=TrainSpec(epochs=2, batch_size=64, lr=0.05),
    budget=None,  # no width rescaling: on and off differ only by the technique
    seed=0,
)


@cache
def digits_splits() -> Splits:
    """The digits set cut to 512 training images: eight steps of 64 per epoch."""
    splits = make_splits(load_dataset("digits"), val_fraction=0.1, seed=0)
    return replace(splits, x_train=splits.x_train[:512], y_train=splits.y_train[:512])


@cache
def tiny_run(technique: str | None) -> Result:
    """One short run with `technique` on (default hyperparameters), or none when None."""
    spec = replace(TINY, techniques={technique: {}} if technique else {})
    return train(spec, digits_splits(), threads=2, latency_runs=2)


def weights_differ(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() != sb.keys() or any(
        sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]) for k in sa
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_technique_trains_finite_and_changes_the_run(name: str) -> None:
    off, on = tiny_run(None), tiny_run(name)
    assert math.isfinite(on.final_loss)
    assert 0.0 <= on.accuracy <= 1.0
    if REGISTRY[name].kind == "architecture":
        built_differs = (on.params, on.flops) != (off.params, off.flops) or str(on.model) != str(
            off.model
        )
        assert built_differs, f"{name}: the built model is the same as without it"
        assert (on.accuracy, on.final_loss) != (off.accuracy, off.final_loss), (
            f"{name}: a different model trained to exactly the same accuracy and loss"
        )
    else:
        assert (on.params, on.flops) == (off.params, off.flops), (
            f"{name}: a training technique changed the model's size"
        )
        assert on.final_loss != off.final_loss or weights_differ(on.model, off.model), (
            f"{name}: turning it on changed neither the loss nor the weights"
        )


# -- one recipe: the schedule every trial shares, and what one-cycle and SWA change -------


@contextmanager
def optimiser_steps() -> Iterator[list[tuple[float, float]]]:
    """(lr, momentum) of every optimiser step taken inside the block, by any optimiser."""
    seen: list[tuple[float, float]] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        group = optimizer.param_groups[0]
        seen.append((group["lr"], group["momentum"]))

    handle = register_optimizer_step_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def recipe_run(epochs: int, techniques: dict, **recipe: object) -> list[tuple[float, float]]:
    """The (lr, momentum) of every step of a TINY run (8 steps per epoch)."""
    spec = replace(TINY, train=replace(TINY.train, epochs=epochs, **recipe), techniques=techniques)
    with optimiser_steps() as steps:
        train(spec, digits_splits(), threads=2, latency_runs=2)
    return steps


def cosine(lr: float, total: int) -> list[float]:
    return [lr * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]


def test_base_schedule_is_cosine_to_zero_per_step_or_constant() -> None:
    steps = recipe_run(2, {})
    assert [lr for lr, _ in steps] == pytest.approx(cosine(0.05, 16))
    assert {m for _, m in steps} == {0.9}
    steps = recipe_run(2, {"sam": {}}, schedule="constant")  # SAM: still one step per update
    assert [lr for lr, _ in steps] == [0.05] * 16


def test_with_swa_the_base_schedule_runs_before_averaging_and_swalr_after() -> None:
    # start 0.5 of 4 epochs: 16 steps of cosine, then 16 of SWALR (annealed over 2 steps).
    steps = recipe_run(4, {"swa": {"start": 0.5, "lr": 0.01}})
    lrs = [lr for lr, _ in steps]
    assert len(lrs) == 32
    assert lrs[:16] == pytest.approx(cosine(0.05, 16))
    assert lrs[18:] == pytest.approx([0.01] * 14)


@pytest.mark.parametrize("swa", [False, True])
def test_one_cycle_spans_exactly_the_steps_before_averaging(swa: bool) -> None:
    max_lr, pct = 0.2, 0.25
    techniques = {"one_cycle": {"max_lr": max_lr, "pct_start": pct}}
    if swa:
        techniques["swa"] = {"start": 0.5, "lr": 0.01}
    steps = recipe_run(4, techniques)
    main = 16 if swa else 32
    lrs = [lr for lr, _ in steps[:main]]
    assert lrs[0] == pytest.approx(max_lr / 25)
    assert max(range(main), key=lrs.__getitem__) == round(pct * main) - 1
    # The last scheduled step is the cycle's last: not cut short, not run past its end.
    assert lrs[-1] == pytest.approx(max_lr / 25 / 1e4)
    assert steps[main - 1][1] == pytest.approx(0.95)  # one-cycle's momentum at the end
    if swa:
        # SWA owns the rest, and momentum is the trial's again.
        assert [m for _, m in steps[main:]] == [0.9] * 16
        assert [lr for lr, _ in steps[main + 2 :]] == pytest.approx([0.01] * 14)


@pytest.mark.parametrize(
    ("epochs", "batch", "pct"), [(1, 64, 0.125), (1, 128, 0.25), (2, 512, 0.5)]
)
def test_one_cycle_survives_a_warm_up_of_exactly_one_step(
    epochs: int, batch: int, pct: float
) -> None:
    # pct * steps == 1 divided by zero inside OneCycleLR: 8, 4 and 2 steps of 512 images.
    steps = recipe_run(epochs, {"one_cycle": {"max_lr": 0.2, "pct_start": pct}}, batch_size=batch)
    lrs = [lr for lr, _ in steps]
    assert lrs[0] == pytest.approx(0.2)  # the warm-up's one step is its peak
    assert lrs[-1] == pytest.approx(0.2 / 25 / 1e4)


# -- the MNIST baseline learns in one epoch -----------------------------------------------


def data_dir() -> Path:
    """$ABLATION_DATA_DIR, else the shared data folder next to the checkout."""
    configured = os.environ.get("ABLATION_DATA_DIR")
    return (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"
    )


def test_mnist_baseline_reaches_90_percent_in_one_epoch() -> None:
    root = data_dir()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"no MNIST under {root} (set ABLATION_DATA_DIR to the data folder)")
    space = spaces.load("mnist_budget_1_5k")
    spec = space.replay(space.baseline_params())
    spec = replace(spec, train=replace(spec.train, epochs=1))
    splits = make_splits(
        load_dataset(space.data.dataset, root), val_fraction=space.data.val_fraction, seed=0
    )
    result = train(spec, splits, threads=2, latency_runs=2)
    assert result.params <= space.budget
    assert result.accuracy >= 0.90, f"validation accuracy {result.accuracy:.4f} after one epoch"


# -- every trial of a budget preset lands inside its budget window ------------------------


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("mnist_budget_1_5k", 1470, 1500), ("cifar_budget_140k", 137_200, 140_000)],
)
def test_every_trial_lands_in_the_budget_window(preset: str, low: int, high: int) -> None:
    space = spaces.load(preset)
    in_shape = (1, 28, 28) if space.data.dataset == "mnist" else (3, 32, 32)
    # Every searched technique on at its defaults, and every one off.
    specs = [space.replay(space.default_params(on)) for on in (space.techniques, ())]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # 15 draws, not more: fitting one configuration builds ~35 meta-device models (~0.5 s).
    specs += [space.suggest(study.ask()) for _ in range(15)]
    for spec in specs:
        params = resolve_arch(spec, in_shape, 10).params
        assert low <= params <= high, f"{sorted(spec.techniques)}: {params} parameters"
