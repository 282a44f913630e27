"""Fused groups are exact: each member trains as it would alone.

In float64, so that what differs between a member fused and alone is only the order in
which fused kernels add (far below 1e-6), never a member's own state: for every registered
technique, a group of three seeds and groups of mixed configurations, each member's
parameters and buffers after two epochs match its trial trained alone, to 1e-6 relative
(integer buffers exactly), with the same predicted class for every validation image. A
member whose loss turns NaN leaves the others bit for bit as they are without it, and a
killed group resumes into the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

import trainer.budget
import trainer.checkpoint
from trainer.data import DeviceData, Splits, load_dataset, make_splits
from trainer.group import group_key
from trainer.models.fused import FusedLinear, FuseError, fuse, side_by_side
from trainer.models.net import Net
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.techniques import REGISTRY
from trainer.train import Diverged, Result, train, train_group

# 8x8 digits -> 4x4 -> 2x2, 256 training images in batches of 32: 8 steps per epoch.
TINY = TrialSpec(
    arch=ArchSpec(stages=(StageSpec(8), StageSpec(12)), stem_channels=4),
    train=TrainSpec(epochs=2, batch_size=32, lr=0.05, crop_padding=1, flip=True),
    budget=None,
)
# Values that make each technique act on 8x8 images within two epochs.
PARAMS: dict[str, dict] = {"cutout": {"size": 3}, "swa": {"start": 0.5}, "ema": {"decay": 0.99}}
SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True, scope="module")
def float64() -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@cache
def digits() -> Splits:
    splits = make_splits(load_dataset("digits", None), val_fraction=0.1, seed=0)
    return replace(splits, x_train=splits.x_train[:256], y_train=splits.y_train[:256])


def spec(seed: int = 0, techniques: dict | None = None, **train_fields: object) -> TrialSpec:
    return replace(
        TINY, seed=seed, techniques=techniques or {}, train=replace(TINY.train, **train_fields)
    )


def group(specs: list[TrialSpec], **kw: object) -> list[Result | Exception]:
    return train_group(specs, digits(), threads=1, latency_runs=2, **kw)


_alone: dict[str, Result] = {}


def alone(trial: TrialSpec) -> Result:
    """The trial trained by itself (cached: several tests compare with the same one)."""
    key = repr(trial)
    if key not in _alone:
        _alone[key] = train(trial, digits(), threads=1, latency_runs=2)
    return _alone[key]


@torch.inference_mode()
def predictions(model: nn.Module) -> torch.Tensor:
    splits = digits()
    val = DeviceData(splits.x_val, splits.y_val, splits.mean, splits.std, channels_last=True)
    model.eval()
    return torch.cat([model(x).argmax(1) for x, _ in val.batches(1024)])


def assert_matches(got: Result | Exception, want: Result) -> None:
    """`got` is `want` to 1e-6 relative per tensor, integer buffers equal, same predictions."""
    assert isinstance(got, Result), got
    g, w = got.model.state_dict(), want.model.state_dict()
    assert g.keys() == w.keys()
    for name, tensor in w.items():
        if tensor.is_floating_point():
            assert (g[name] - tensor).norm() <= 1e-6 * tensor.norm(), name
        else:
            assert torch.equal(g[name], tensor), name  # num_batches_tracked
    assert torch.equal(predictions(got.model), predictions(want.model))
    assert got.final_loss == pytest.approx(want.final_loss, rel=1e-6)
    assert got.resumed_from_epoch == want.resumed_from_epoch


def assert_identical(got: Result | Exception, want: Result | Exception) -> None:
    assert isinstance(got, Result) and isinstance(want, Result), (got, want)
    g, w = got.model.state_dict(), want.model.state_dict()
    assert g.keys() == w.keys()
    for name in w:
        assert torch.equal(g[name], w[name]), name
    assert got.final_loss == want.final_loss


# -- every technique, three seeds -------------------------------------------------------


@pytest.mark.parametrize("name", [None, *sorted(REGISTRY)])
def test_three_seeds_fused_match_each_seed_alone(name: str | None) -> None:
    techniques = {name: PARAMS.get(name, {})} if name else {}
    specs = [spec(seed, techniques) for seed in SEEDS]
    for got, trial in zip(group(specs), specs, strict=True):
        assert_matches(got, alone(trial))


MIXED = [
    spec(0),
    spec(
        1,
        {"mixup": {"alpha": 0.4}, "label_smoothing": {}},
        lr=0.1,
        momentum=0.8,
        nesterov=False,
        schedule="constant",
        flip=False,
    ),
    spec(2, {"one_cycle": {}, "cutout": {"size": 3}, "swa": {"start": 0.5}}, weight_decay=1e-3),
    spec(3, {"swa": {"start": 0.5, "lr": 0.05}, "mixup": {}}, lr=0.02, crop_padding=0),
    spec(4, {"ema": {"warmup": True}, "tta_flip": {}}, warmup_fraction=0.2, no_wd_bn_bias=True),
    spec(
        5,
        {"ema": {"decay": 0.995}, "cutout": {"size": 3}},
        schedule="constant",
        warmup_fraction=0.5,
    ),
]
SAM_MIXED = [
    spec(0, {"sam": {}}),
    spec(1, {"sam": {"rho": 0.1}, "label_smoothing": {}}, lr=0.1),
    spec(2, {"sam": {"adaptive": True}, "swa": {"start": 0.5}, "one_cycle": {}}),
    spec(3, {"sam": {}, "ema": {"decay": 0.99}}, no_wd_bn_bias=True),
]


@pytest.mark.parametrize("specs", [MIXED, SAM_MIXED], ids=["plain", "sam"])
def test_mixed_configurations_fused_match_each_alone(specs: list[TrialSpec]) -> None:
    for got, trial in zip(group(specs), specs, strict=True):
        assert_matches(got, alone(trial))


# -- a member that diverges leaves the others as they were ------------------------------


@pytest.mark.parametrize("recipe", [{}, {"sam": {}}], ids=["plain", "sam"])
def test_a_nan_member_diverges_alone_and_leaves_the_others_bit_for_bit(recipe: dict) -> None:
    healthy = [spec(seed, recipe, epochs=1) for seed in SEEDS]
    planted = list(healthy)
    planted[1] = spec(1, recipe, epochs=1, lr=float("nan"))  # NaN weights after its first step
    with_nan, without = group(planted), group(healthy)
    assert isinstance(with_nan[1], Diverged) and "epoch 1" in str(with_nan[1])
    assert isinstance(without[1], Result)
    for i in (0, 2):
        assert_identical(with_nan[i], without[i])


def test_after_a_member_diverges_the_others_train_on_as_alone() -> None:
    specs = [spec(0), spec(1, lr=float("nan")), spec(2, {"mixup": {}})]
    results = group(specs)
    assert isinstance(results[1], Diverged)
    assert_matches(results[0], alone(specs[0]))  # epoch 2 ran as a group of two
    assert_matches(results[2], alone(specs[2]))


# -- pruning and killing ------------------------------------------------------------------


class Killed(BaseException):
    """Stands for a kill of the whole process: nothing catches it."""


RESUMED = [
    spec(0, {"swa": {"start": 0.5}, "mixup": {}}, epochs=3),
    spec(1, {"one_cycle": {}, "cutout": {"size": 3}}, epochs=3),
    spec(2, {"ema": {"decay": 0.99, "warmup": True}}, epochs=3, warmup_fraction=0.2),
]


@cache
def uninterrupted() -> tuple[Result | Exception, ...]:
    return tuple(group(RESUMED))


def paths(folder: Path) -> list[Path | None]:
    return [folder / f"member_{i}.pt" for i in range(len(RESUMED))]


def test_a_group_killed_mid_epoch_resumes_into_the_uninterrupted_one(tmp_path: Path) -> None:
    forwards = 0

    def failpoint(module: nn.Module, args: object) -> None:
        nonlocal forwards
        if isinstance(module, Net) and module.training:
            forwards += 1
            if forwards == 8 + 3:  # the fourth step of the second epoch
                raise Killed

    handle = register_module_forward_pre_hook(failpoint)
    try:
        with pytest.raises(Killed):
            group(RESUMED, checkpoints=paths(tmp_path))
    finally:
        handle.remove()
    resumed = group(RESUMED, checkpoints=paths(tmp_path))
    assert [r.resumed_from_epoch for r in resumed] == [1, 1, 1]  # type: ignore[union-attr]
    for got, want in zip(resumed, uninterrupted(), strict=True):
        assert_identical(got, want)


def test_members_killed_between_their_checkpoints_rejoin_at_their_own_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = trainer.checkpoint.save
    saves = 0

    def failpoint(*args: object, **kwargs: object) -> None:
        nonlocal saves
        saves += 1
        if saves == 3 + 2:  # epoch 2: member 0's checkpoint written, member 1's not
            raise Killed
        save(*args, **kwargs)

    monkeypatch.setattr(trainer.checkpoint, "save", failpoint)
    with pytest.raises(Killed):
        group(RESUMED, checkpoints=paths(tmp_path))
    monkeypatch.setattr(trainer.checkpoint, "save", save)
    resumed = group(RESUMED, checkpoints=paths(tmp_path))
    # Members 1 and 2 train epoch 2 as a group of two, then member 0 joins for epoch 3.
    assert [r.resumed_from_epoch for r in resumed] == [2, 1, 1]  # type: ignore[union-attr]
    for got, want in zip(resumed, uninterrupted(), strict=True):
        assert_matches(got, replace(want, resumed_from_epoch=got.resumed_from_epoch))


def test_a_member_whose_on_epoch_raises_leaves_and_the_others_train_on() -> None:
    class Pruned(Exception):
        pass

    seen: list[tuple[int, int]] = []

    def on_epoch(member: int, epoch: int, accuracy: float) -> None:
        seen.append((member, epoch))
        if member == 0 and epoch == 1:
            raise Pruned

    specs = [spec(seed) for seed in SEEDS]
    results = group(specs, on_epoch=on_epoch)
    assert isinstance(results[0], Pruned)
    assert seen == [(0, 1), (1, 1), (2, 1), (1, 2), (2, 2)]
    assert_matches(results[1], alone(specs[1]))
    assert_matches(results[2], alone(specs[2]))


# -- the grouping rule and the fused network ----------------------------------------------


def test_the_rule_groups_per_member_settings_and_separates_shared_ones() -> None:
    arch = TINY.arch
    key = group_key(spec(0), arch)
    for member in (*MIXED, spec(5, {"swa": {}}, schedule="constant", flip=False)):
        assert group_key(member, arch) == key
    # The same channel counts reached by another width build the same network.
    assert (
        group_key(
            spec(0), replace(arch, stem_channels=2, width=2.0, stages=(StageSpec(4), StageSpec(6)))
        )
        == key
    )
    for other in (spec(0, batch_size=64), spec(0, epochs=3), spec(0, {"sam": {}})):
        assert group_key(other, arch) != key
    assert group_key(spec(0), replace(arch, head="gap")) != key
    with pytest.raises(ValueError, match="may not share a group"):
        group([spec(0), spec(1, {"gap": {}})])


def test_paired_seeds_share_one_budget_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted = []
    fit = trainer.budget.resolve_arch

    def counted(trial: TrialSpec, *args: object) -> object:
        fitted.append(trial.seed)
        return fit(trial, *args)

    monkeypatch.setattr(trainer.budget, "resolve_arch", counted)
    budgeted = [replace(spec(seed, {"se": {}}), budget=1200) for seed in SEEDS]
    trials = [*budgeted, replace(budgeted[0], techniques={})]
    archs = trainer.budget.resolve_archs(trials, (1, 8, 8), 10)
    assert fitted == [0, 0]  # one fit for the three seeds, one for the other techniques
    assert archs == [fit(t, (1, 8, 8), 10).arch for t in trials]
    assert archs[0].width != 1.0  # fitted, not the spec's own


def test_a_fused_net_computes_each_member_and_keeps_their_statistics_apart() -> None:
    arch = replace(TINY.arch, separable_from=1, head="gap", blur=3, se_ratio=0.5)
    models = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        models.append(Net(arch, (1, 8, 8), 10))
    copies = [Net(arch, (1, 8, 8), 10) for _ in SEEDS]
    for copy, model in zip(copies, models, strict=True):
        copy.load_state_dict(model.state_dict())
    batches = [torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(s)) for s in SEEDS]
    fused = fuse(models)
    out = fused(side_by_side(batches))
    out.square().sum().backward()
    for k, (copy, model, x) in enumerate(zip(copies, models, batches, strict=True)):
        alone_out = copy(x)
        alone_out.square().sum().backward()
        torch.testing.assert_close(out[:, 10 * k : 10 * (k + 1)], alone_out)
        for (name, p), q in zip(model.named_parameters(), copy.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, msg=name)
        for (name, b), c in zip(model.named_buffers(), copy.buffers(), strict=True):
            torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-12, msg=name)
    assert not list(fused.parameters())  # the members own every parameter
    assert fuse(models[:1]) is models[0]


def test_fuse_refuses_what_it_cannot_fuse() -> None:
    with pytest.raises(FuseError, match="GroupNorm holds parameters"):
        fuse([nn.Sequential(nn.GroupNorm(2, 4)) for _ in range(2)])
    with pytest.raises(FuseError, match="Dropout is not known to act per channel"):
        fuse([nn.Sequential(nn.Linear(3, 4), nn.Dropout()) for _ in range(2)])
    with pytest.raises(FuseError, match="Linear differ"):
        fuse([nn.Sequential(nn.Linear(3, 4)), nn.Sequential(nn.Linear(3, 5))])
    assert isinstance(fuse([nn.Linear(3, 4), nn.Linear(3, 4)]), FusedLinear)
