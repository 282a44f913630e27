"""Contracts every technique and every preset must keep, derived from the registries.

The technique list comes from `REGISTRY`: each technique's specific effect is asserted on
a traced run through `train()`, and a newly registered technique without one fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache

import optuna
import pytest
import torch
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import spaces
import trainer.train
from trainer.budget import BudgetError, resolve_arch
from trainer.data import DeviceData, Splits, load_dataset, make_splits
from trainer.models.blurpool import BlurPool2d
from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.net import ConvBNAct, Net
from trainer.models.residual import Projection, Residual
from trainer.models.separable import SeparableConv2d
from trainer.models.squeeze_excite import SqueezeExcite
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.techniques import REGISTRY, rules
from trainer.techniques.ema import ema_decay
from trainer.techniques.swa import SWA
from trainer.techniques.tta_flip import FlipTTA
from trainer.train import Result, sgd, soft_cross_entropy, train

# -- every technique has its specific effect in a short run ----------------------------

# 8x8 digits -> 4x4 -> 2x2: small enough for a few seconds per run, big enough that the
# flatten head differs from GAP and BlurPool has something to blur.
TINY = TrialSpec(
    arch=ArchSpec(stages=(StageSpec(8), StageSpec(12)), stem_channels=4),
    # Two epochs, so SWA (averaging from epoch floor(0.75 * 2) = 1) averages after real steps.
    train=TrainSpec(epochs=2, batch_size=64, lr=0.05),
    budget=None,  # no width rescaling: on and off differ only by the technique
    seed=0,
)
STEPS = 16  # 2 epochs of 8 steps
# Hyperparameters that make the effect visible on 8x8 images.
PARAMS: dict[str, dict] = {
    "cutout": {"size": 3},
    "label_smoothing": {"eps": 0.2},
    "ema": {"decay": 0.99},
}


@cache
def digits_splits() -> Splits:
    """The digits set cut to 512 training images: eight steps of 64 per epoch."""
    splits = make_splits(load_dataset("digits"), val_fraction=0.1, seed=0)
    return replace(splits, x_train=splits.x_train[:512], y_train=splits.y_train[:512])


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


@dataclass
class Trace:
    """What one run did: its result, and every training step as the network and loss saw it."""

    result: Result
    inputs: list[torch.Tensor]  # the input of every training-mode forward pass
    targets: list[torch.Tensor]  # the targets of every loss
    steps: list[tuple[float, float]]  # (lr, momentum) of every optimiser step


@cache
def tiny_run(techniques: tuple[str, ...]) -> Trace:
    """One short run with `techniques` on, traced."""
    spec = replace(TINY, techniques={name: PARAMS.get(name, {}) for name in techniques})
    inputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []

    def see_input(module: torch.nn.Module, args: tuple) -> None:
        if isinstance(module, Net) and module.training:
            inputs.append(args[0].detach().clone())

    def loss(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        targets.append(soft.detach().clone())
        return soft_cross_entropy(logits, soft)

    handle = register_module_forward_pre_hook(see_input)
    try:
        with pytest.MonkeyPatch.context() as patch, optimiser_steps() as steps:
            patch.setattr("trainer.train.soft_cross_entropy", loss)
            result = train(spec, digits_splits(), threads=2, latency_runs=2)
    finally:
        handle.remove()
    return Trace(result, inputs, targets, steps)


def stages(model: torch.nn.Module) -> list[list[torch.nn.Module]]:
    return [list(stage) for stage in list(model.features)[1:]]


def depthwise_effect(on: Trace, off: Trace) -> None:
    for stage in stages(on.result.model):  # first_stage 0: every stage's conv is separable
        assert isinstance(stage[0], SeparableConv2d)
    assert not any(isinstance(m, SeparableConv2d) for m in off.result.model.modules())


def gap_effect(on: Trace, off: Trace) -> None:
    head = list(on.result.model.head)
    assert isinstance(head[0], torch.nn.AdaptiveAvgPool2d)
    assert head[-1].in_features == 12  # the last stage's channels, not channels * 2 * 2
    assert off.result.model.head[-1].in_features == 12 * 2 * 2


def blurpool_effect(on: Trace, off: Trace) -> None:
    for stage in stages(on.result.model):  # Zhang 2019: MaxPool(2, s1), then Blur(s2)
        pool, blur = stage[-2:]
        assert isinstance(pool, torch.nn.MaxPool2d) and (pool.kernel_size, pool.stride) == (2, 1)
        assert isinstance(blur, BlurPool2d) and blur.stride == 2
    for stage in stages(off.result.model):
        assert isinstance(stage[-1], torch.nn.MaxPool2d) and stage[-1].stride == 2


def se_effect(on: Trace, off: Trace) -> None:
    for stage in stages(on.result.model):  # Hu 2018: gate the convs' output, then downsample
        kinds = [type(m) for m in stage]
        assert kinds == [ConvBNAct, SqueezeExcite, torch.nn.MaxPool2d]
    assert not any(isinstance(m, SqueezeExcite) for m in off.result.model.modules())


def cutout_effect(on: Trace, off: Trace) -> None:
    for x in on.inputs:
        holes = (x == 0).all(1)  # normalised inputs are zero only inside a hole
        assert (holes.sum((1, 2)) >= 4).all()  # a 3x3 square, at worst clipped to 2x2
        assert len({tuple(h.flatten().tolist()) for h in holes}) > len(x) // 2
    assert not any((x == 0).all(1).any() for x in off.inputs)


def mixup_effect(on: Trace, off: Trace) -> None:
    for t in on.targets:
        torch.testing.assert_close(t.sum(1), torch.ones(len(t)))
        assert ((t > 0).sum(1) <= 2).all()  # each row mixes two one-hots
        assert ((t > 0).sum(1) == 2).any()
        lam = t.max(1).values[(t > 0).sum(1) == 2]
        torch.testing.assert_close(lam, lam[:1].expand_as(lam))  # one lambda per batch


def label_smoothing_effect(on: Trace, off: Trace) -> None:
    for t in on.targets:  # (1 - 0.2) * onehot + 0.2 / 10, smoothed once
        assert t.max().item() == pytest.approx(0.82)
        assert t.min().item() == pytest.approx(0.02)
    assert all(set(t.unique().tolist()) == {0.0, 1.0} for t in off.targets)


def sam_effect(on: Trace, off: Trace) -> None:
    assert len(on.inputs) == 2 * len(on.steps) == 2 * STEPS  # two passes per optimiser step
    assert all(
        a is b or torch.equal(a, b) for a, b in zip(on.inputs[::2], on.inputs[1::2], strict=True)
    )
    bn = on.result.model.features[0][1]
    assert bn.num_batches_tracked.item() == STEPS  # the second pass leaves BatchNorm alone


def one_cycle_effect(on: Trace, off: Trace) -> None:
    lrs = [lr for lr, _ in on.steps]
    assert len(lrs) == STEPS and max(lrs) == pytest.approx(0.1, rel=0.01)  # max_lr at 30%
    assert lrs.index(max(lrs)) == round(0.3 * STEPS) - 1
    assert {m for _, m in on.steps} != {0.9}  # momentum cycles


def swa_effect(on: Trace, off: Trace) -> None:
    # The returned model is the averaged one: BatchNorm statistics recomputed over the 8
    # clean batches, not the 16 training steps' (see the test below for the weights).
    assert on.result.model.features[0][1].num_batches_tracked.item() == 8
    assert off.result.model.features[0][1].num_batches_tracked.item() == STEPS
    assert [lr for lr, _ in on.steps][8:] != [lr for lr, _ in off.steps][8:]  # SWALR owns them


def trains_as_without(on: Trace, off: Trace) -> None:
    """`on` trained exactly as `off`: the same batches, schedule and losses."""
    assert len(on.inputs) == len(off.inputs) == STEPS
    assert all(torch.equal(a, b) for a, b in zip(on.inputs, off.inputs, strict=True))
    assert on.steps == off.steps
    assert on.result.final_loss == off.result.final_loss


def ema_effect(on: Trace, off: Trace) -> None:
    trains_as_without(on, off)  # it only watches the weights
    got, live = on.result.model.state_dict(), off.result.model.state_dict()
    assert not torch.equal(got["features.0.0.weight"], live["features.0.0.weight"])  # averaged
    assert got["features.0.1.num_batches_tracked"].item() == STEPS  # copied, not re-estimated
    # Formula and what is measured: test_ema_average_is_evaluated_timed_counted_and_returned.


def tta_flip_effect(on: Trace, off: Trace) -> None:
    trains_as_without(on, off)  # it only changes how the trained net predicts
    assert on.result.params == off.result.params
    assert on.result.flops == 2 * off.result.flops  # the deployed net runs both views
    # The validation accuracy is that of the mean logits of each image and its mirror.
    splits = digits_splits()
    val = DeviceData(splits.x_val, splits.y_val, splits.mean, splits.std)
    net = on.result.model.eval()
    with torch.inference_mode():
        correct = sum(
            int(((net(x) + net(x.flip(-1))).argmax(1) == y).sum()) for x, y in val.batches(1024)
        )
    assert on.result.accuracy == pytest.approx(correct / len(val), abs=1.01 / len(val))
    assert on.result.accuracy != off.result.accuracy


def inverted_bottleneck_effect(on: Trace, off: Trace) -> None:
    # Against depthwise alone, which it requires: its separable blocks become bottlenecks.
    for stage in stages(on.result.model):
        block = stage[0]
        assert isinstance(block, InvertedBottleneck)
        assert block.expand.out_channels == 6 * block.expand.in_channels  # the paper's ratio
    assert all(isinstance(stage[0], SeparableConv2d) for stage in stages(off.result.model))


def residual_effect(on: Trace, off: Trace) -> None:
    for stage in stages(on.result.model):  # 4 -> 8 -> 12 channels: projection shortcuts
        block = stage[0]
        assert isinstance(block, Residual) and isinstance(block.shortcut, Projection)
        # The shortcut was on the training path: its BatchNorm saw every step's batch.
        assert block.shortcut[1].num_batches_tracked.item() == STEPS
    assert not any(isinstance(m, Residual) for m in off.result.model.modules())


def late_downsample_effect(on: Trace, off: Trace) -> None:
    first = stages(on.result.model)[0]
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in first)  # 8x8 stays 8x8
    assert on.result.model.head[-1].in_features == 12 * 4 * 4  # one downsampling fewer
    assert off.result.model.head[-1].in_features == 12 * 2 * 2
    assert on.result.flops > off.result.flops


EFFECTS = {
    "depthwise": depthwise_effect,
    "gap": gap_effect,
    "blurpool": blurpool_effect,
    "se": se_effect,
    "inverted_bottleneck": inverted_bottleneck_effect,
    "residual": residual_effect,
    "late_downsample": late_downsample_effect,
    "cutout": cutout_effect,
    "mixup": mixup_effect,
    "label_smoothing": label_smoothing_effect,
    "sam": sam_effect,
    "one_cycle": one_cycle_effect,
    "swa": swa_effect,
    "ema": ema_effect,
    "tta_flip": tta_flip_effect,
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_technique_has_its_specific_effect_in_a_run(name: str) -> None:
    """On against off, each with the techniques it requires (rules.py) on."""
    assert name in EFFECTS, f"{name}: registered without a test of its effect"
    required = rules.requirements(name)
    on = tiny_run((*required, name))
    assert math.isfinite(on.result.final_loss)
    EFFECTS[name](on, tiny_run(required))


def spy_on_measurements(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.nn.Module]:
    """The model each of `evaluate`, `measure_latency`, `count_params`, `count_flops` last saw."""
    used: dict[str, torch.nn.Module] = {}
    for name in ("evaluate", "measure_latency", "count_params", "count_flops"):
        original = getattr(trainer.train, name)

        def spy(model, *args, _original=original, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            used[_name] = model
            return _original(model, *args, **kwargs)

        monkeypatch.setattr(trainer.train, name, spy)
    return used


def test_swa_averaged_model_is_evaluated_timed_counted_and_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = spy_on_measurements(monkeypatch)
    snapshots: list[list[torch.Tensor]] = []
    after_epoch = SWA.after_epoch

    def snapshot(self: SWA, model: torch.nn.Module) -> None:
        snapshots.append([p.detach().clone() for p in model.parameters()])
        after_epoch(self, model)

    monkeypatch.setattr(SWA, "after_epoch", snapshot)
    spec = replace(TINY, train=replace(TINY.train, epochs=4), techniques={"swa": {"start": 0.5}})
    result = train(spec, digits_splits(), threads=2, latency_runs=2)

    assert len(snapshots) == 2  # epochs 2 and 3
    assert set(used) == {"evaluate", "measure_latency", "count_params", "count_flops"}
    assert all(model is result.model for model in used.values())  # and the runner saves it
    for i, p in enumerate(result.model.parameters()):
        torch.testing.assert_close(p.detach(), (snapshots[0][i] + snapshots[1][i]) / 2)
    # BatchNorm statistics recomputed over the 8 clean batches, not carried from 32 steps.
    assert result.model.features[0][1].num_batches_tracked.item() == 8


def test_ema_average_is_evaluated_timed_counted_and_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The returned model is the recursion over the state after every optimiser step."""
    used = spy_on_measurements(monkeypatch)
    model_states: list[dict[str, torch.Tensor]] = []

    def after(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        model_states.append({k: v.clone() for k, v in trained.state_dict().items()})

    def remember(module: torch.nn.Module, args: tuple) -> None:
        nonlocal trained
        if isinstance(module, Net) and module.training:
            trained = module

    trained: torch.nn.Module | None = None
    handles = [register_optimizer_step_post_hook(after), register_module_forward_pre_hook(remember)]
    try:
        spec = replace(TINY, techniques={"ema": {"decay": 0.99, "warmup": True}})
        result = train(spec, digits_splits(), threads=2, latency_runs=2)
    finally:
        for handle in handles:
            handle.remove()

    assert len(model_states) == STEPS
    assert set(used) == {"evaluate", "measure_latency", "count_params", "count_flops"}
    assert all(model is result.model for model in used.values())  # and the runner saves it
    want = model_states[0]
    for n, state in enumerate(model_states[1:], start=2):
        d = ema_decay(0.99, n, True)
        want = {
            k: d * want[k] + (1 - d) * v if v.is_floating_point() else v for k, v in state.items()
        }
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(value, want[key], msg=key)


def test_tta_flip_is_what_is_evaluated_timed_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    used = spy_on_measurements(monkeypatch)
    seen: list[float] = []
    spec = replace(TINY, techniques={"tta_flip": {}, "ema": {}})
    result = train(
        spec, digits_splits(), threads=2, latency_runs=2, on_epoch=lambda e, a: seen.append(a)
    )
    assert set(used) == {"evaluate", "measure_latency", "count_params", "count_flops"}
    for model in used.values():  # the average (ema), deployed with its mirror
        assert isinstance(model, FlipTTA) and model.net is result.model
    assert isinstance(result.model, Net)  # the weights saved are the network's own
    assert len(seen) == 2  # every epoch is validated as deployed too (the live net, mirrored)


def test_sam_restores_the_weights_before_every_base_step() -> None:
    """Between two optimiser steps nothing may move the weights: SAM's ascent is undone."""
    after_step: list[list[torch.Tensor]] = []
    moved: list[bool] = []

    def params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p.detach() for group in optimizer.param_groups for p in group["params"]]

    def before(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        if after_step:
            moved.append(not all(map(torch.equal, after_step[-1], params(optimizer))))

    def after(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        after_step.append([p.clone() for p in params(optimizer)])

    handles = [register_optimizer_step_pre_hook(before), register_optimizer_step_post_hook(after)]
    try:
        train(replace(TINY, techniques={"sam": {}}), digits_splits(), threads=2, latency_runs=2)
    finally:
        for handle in handles:
            handle.remove()
    assert len(moved) == STEPS - 1 and not any(moved)


# -- one recipe: the schedule every trial shares, and what one-cycle and SWA change -------


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


def test_warm_up_rises_to_lr_then_the_base_schedule_runs_over_the_rest() -> None:
    # 16 steps, warm-up 0.25 of them: 4 steps at 0.05 * (t + 1) / 5, then 12 of cosine.
    lrs = [lr for lr, _ in recipe_run(2, {}, warmup_fraction=0.25)]
    assert lrs == pytest.approx([0.05 * (t + 1) / 5 for t in range(4)] + cosine(0.05, 12))
    lrs = [lr for lr, _ in recipe_run(2, {}, warmup_fraction=0.25, schedule="constant")]
    assert lrs == pytest.approx([0.01, 0.02, 0.03, 0.04] + [0.05] * 12)


def test_with_swa_the_warm_up_belongs_to_the_steps_before_averaging() -> None:
    steps = recipe_run(4, {"swa": {"start": 0.5, "lr": 0.01}}, warmup_fraction=0.25)
    lrs = [lr for lr, _ in steps]
    assert lrs[:16] == pytest.approx([0.05 * (t + 1) / 5 for t in range(4)] + cosine(0.05, 12))
    assert lrs[18:] == pytest.approx([0.01] * 14)


def test_one_cycle_ignores_the_warm_up_of_the_base_schedule_it_replaces() -> None:
    one_cycle = {"one_cycle": {"max_lr": 0.2}}
    assert recipe_run(2, one_cycle, warmup_fraction=0.25) == recipe_run(2, one_cycle)


def test_no_wd_bn_bias_decays_only_conv_and_linear_weights() -> None:
    model = Net(TINY.arch, (1, 8, 8), 10)
    names = {id(p): n for n, p in model.named_parameters()}
    plain = sgd(model, TINY.train)
    assert len(plain.param_groups) == 1  # off: the optimiser as it always was
    assert plain.param_groups[0]["weight_decay"] == 5e-4
    split = sgd(model, replace(TINY.train, no_wd_bn_bias=True))
    decayed, free = split.param_groups
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0
    norms = {
        f"{m}.{n}"
        for m, module in model.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
        for n, _ in module.named_parameters()
    }
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert {names[id(p)] for p in free["params"]} == norms | biases
    assert {names[id(p)] for p in decayed["params"]} == set(names.values()) - norms - biases
    # With a zero gradient only weight decay moves a parameter: those without stay put.
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    split.step()
    for p, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, old) == (p.ndim <= 1), names[id(p)]


def test_no_wd_bn_bias_is_what_a_run_trains_with() -> None:
    groups: list[list[float]] = []

    def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        groups.append([g["weight_decay"] for g in optimizer.param_groups])

    handle = register_optimizer_step_pre_hook(record)
    try:
        spec = replace(TINY, train=replace(TINY.train, no_wd_bn_bias=True))
        train(spec, digits_splits(), threads=2, latency_runs=2)
    finally:
        handle.remove()
    assert groups == [[5e-4, 0.0]] * STEPS


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


# -- every trial of a budget preset lands inside its budget window ------------------------


@pytest.mark.parametrize(
    ("preset", "low", "high", "rejected"),  # at most `rejected` of the draws refused
    [
        ("mnist_budget_1_5k", 1470, 1500, 0),
        ("cifar_budget_140k", 137_200, 140_000, 0),
        # Nets two or three channels wide (7x7 kernels, two blocks a stage, or a 7x7 map
        # before the flatten head: ~500 parameters a channel) can miss the 2% window.
        ("mnist_wide_1_5k", 1470, 1500, 2),
        ("cifar_wide_140k", 137_200, 140_000, 0),
    ],
)
def test_every_trial_lands_in_the_budget_window_or_is_refused(
    preset: str, low: int, high: int, rejected: int
) -> None:
    space = spaces.load(preset)
    in_shape = (1, 28, 28) if space.data.dataset == "mnist" else (3, 32, 32)
    # Every searched technique on at its defaults, and every one off.
    specs = [space.replay(space.default_params(on)) for on in (space.techniques, ())]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # 15 draws, not more: fitting one configuration builds ~35 meta-device models (~0.5 s).
    specs += [space.suggest(study.ask()) for _ in range(15)]
    refused = []
    for spec in specs:
        try:
            params = resolve_arch(spec, in_shape, 10).params
        except BudgetError as err:  # recorded as over the budget, never trained
            assert f"outside [{low:,}, {high:,}]" in str(err)
            refused.append(sorted(spec.techniques))
            continue
        assert low <= params <= high, f"{sorted(spec.techniques)}: {params} parameters"
    assert len(refused) <= rejected, refused
