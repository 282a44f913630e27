"""Weight EMA against its formula: timm's decay, the recursion over every tensor of the state
dict (running statistics averaged, integer counts copied), and its state across a resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.techniques.ema import EMA, ema_decay, first_share


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)
    )


def train_step(model: nn.Module, i: int) -> None:
    """Stands for one optimiser step: the weights move, and BatchNorm sees a batch."""
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(i)) + i)
        for p in model.parameters():
            p.mul_(0.9).add_(0.1 * (i + 1))


def timm_get_decay(decay: float, step: int, use_warmup: bool) -> float:
    """timm's `ModelEmaV3.get_decay(step)` at its defaults (update_after_step 0, warmup_gamma
    1, warmup_power 2/3), written out from timm/utils/model_ema.py; `step` counts from 1."""
    step = max(0, step - 0 - 1)
    if step <= 0:
        return 0.0
    if use_warmup:
        return max(min(1 - (1 + step / 1.0) ** -(2 / 3), decay), 0.0)
    return decay


@pytest.mark.parametrize("warmup", [False, True])
def test_decay_is_timms(warmup: bool) -> None:
    for decay in (0.99, 0.999, 0.9999):
        for step in (1, 2, 3, 10, 1000, 10**6):
            assert ema_decay(decay, step, warmup) == timm_get_decay(decay, step, warmup)
    assert ema_decay(0.999, 2, True) == pytest.approx(1 - 2 ** (-2 / 3))  # warm: 0.37
    assert ema_decay(0.99, 1001, True) == pytest.approx(0.99, abs=1e-6)  # reached at 1,000


@pytest.mark.parametrize("warmup", [False, True])
def test_the_average_is_the_recursion_over_every_step_buffers_included(warmup: bool) -> None:
    ema, model = EMA(decay=0.99, warmup=warmup), tiny_model()
    snapshots = []
    for i in range(5):
        train_step(model, i)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.after_step(model)
    want = dict(snapshots[0])  # decay 0 at the first update: the weights after step 1
    for n, state in enumerate(snapshots[1:], start=2):
        d = ema_decay(0.99, n, warmup)
        want = {
            k: d * want[k] + (1 - d) * v if v.is_floating_point() else v for k, v in state.items()
        }
    averaged = ema.finalize(model, list)
    assert averaged is not model
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(value, want[key], msg=key)
    bn = averaged[1]
    assert not torch.equal(bn.running_mean, model[1].running_mean)  # averaged, not copied
    assert bn.num_batches_tracked.item() == 5  # copied: a count is not averaged


def test_the_state_resumes_into_the_same_average() -> None:
    straight, model = EMA(decay=0.99, warmup=True), tiny_model()
    assert straight.state_dict() == {}  # nothing before the first step
    for i in range(3):
        train_step(model, i)
        straight.after_step(model)
    resumed = EMA(decay=0.99, warmup=True)
    resumed.load_state_dict(straight.state_dict(), tiny_model())  # a freshly built network
    assert resumed.updates == 3
    train_step(model, 3)
    for ema in (straight, resumed):
        ema.after_step(model)
    for a, b in zip(
        straight.finalize(model, list).state_dict().values(),
        resumed.finalize(model, list).state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_finalize_before_any_step_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before any optimiser step"):
        EMA().finalize(tiny_model(), list)


def test_the_first_steps_share_of_the_average_is_the_product_of_the_later_decays() -> None:
    for warmup in (False, True):
        want = 1.0
        for n in range(2, 301):
            want *= ema_decay(0.99, n, warmup)
        assert first_share(0.99, 300, warmup) == pytest.approx(want, rel=1e-9)
    assert first_share(0.999, 170, False) == pytest.approx(0.999**169)  # 0.84


def test_an_average_mostly_of_its_first_steps_weights_is_refused_with_what_would_do() -> None:
    """The CIFAR-10 pilot that found it: 17 steps an epoch, 10 epochs, decay 0.999."""
    reason = EMA(decay=0.999).too_short(170)
    assert reason == (
        "ema: decay 0.999 over 170 optimiser steps leaves 84% of the average on the weights "
        "after the first step (at most 10% accepted); use ema.warmup: true, or more steps"
    )  # 0.99 ** 169 = 18%: no decay of the choices fits
    assert EMA(decay=0.999, warmup=True).too_short(170) is None  # timm's warm-up
    assert "use ema.warmup: true, ema.decay 0.995, or more steps" in EMA(decay=0.999).too_short(
        600
    )  # 0.995 ** 599 = 5%, 0.999 ** 599 = 55%
    assert EMA(decay=0.999).too_short(2_400) is None  # 0.999 ** 2,399 = 9%
    assert EMA(decay=0.999).too_short(2_000) is not None  # 14%
