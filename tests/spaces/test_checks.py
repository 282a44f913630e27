"""The checks of a space against its data: a baseline that cannot meet its budget is refused
before anything starts, with a message that fits the budget policy in force."""

from __future__ import annotations

import copy

import pytest

from spaces import SpaceError, check_budget, check_length, load, parse, preset_names
from spaces.checks import fewest_steps

DIGITS = ((1, 8, 8), 10)


def quickstart_at(params: int, policy: str):
    raw = copy.deepcopy(load("quickstart").source)
    raw["budget"] = {"params": params, "policy": policy}
    del raw["search"]["objectives"]  # the preset's `budget` objective needs budget levels
    return parse(raw)


@pytest.mark.parametrize(
    ("params", "policy", "message"),
    [
        (
            50,
            "scale",
            "budget.params = 50: the baseline configuration cannot fit it: even its narrowest "
            "net (one channel per stage) has 59 parameters, over the budget of 50 under policy "
            "scale; raise budget.params to at least 59",
        ),
        (
            70,
            "scale",
            "budget.params = 70: the baseline configuration cannot fit it: the closest fit has "
            "59 parameters, outside [69, 70] under policy scale; choose another budget.params",
        ),
        (
            600,
            "reject",
            "budget.params = 600: the baseline configuration cannot fit it: 674 parameters, over "
            "the budget of 600 under policy reject; raise budget.params to at least 674 or use "
            "budget.policy: scale",
        ),
    ],
)
def test_a_budget_the_baseline_cannot_meet_says_what_would(
    params: int, policy: str, message: str
) -> None:
    with pytest.raises(SpaceError) as err:
        check_budget(quickstart_at(params, policy), *DIGITS)
    assert str(err.value) == message


def test_a_budget_the_baseline_meets_passes() -> None:
    check_budget(quickstart_at(60, "scale"), *DIGITS)
    check_budget(quickstart_at(674, "reject"), *DIGITS)


def quickstart_with(**changes: object):
    raw = copy.deepcopy(load("quickstart").source)
    for section, value in changes.items():
        raw[section].update(value)  # type: ignore[arg-type]
    return parse(raw)


def test_the_fewest_steps_are_the_shortest_epochs_at_the_largest_batch() -> None:
    fixed = quickstart_with()  # 12 epochs at batch 64
    assert fewest_steps(fixed, 1149) == 12 * 17
    searched = quickstart_with(train={"epochs": [12, 4], "batch_size": {"low": 32, "high": 128}})
    assert fewest_steps(searched, 1149) == 4 * 8  # 1,149 // 128 = 8 full batches
    assert fewest_steps(searched, 1149, searched=False) == 12 * (1149 // 80)  # the defaults
    assert fewest_steps(fixed, 50) == 12  # a batch larger than the data is one step


def test_an_average_too_short_to_leave_its_first_weights_is_refused_before_training() -> None:
    """Every value a space can draw is checked, the first that fails named: decay 0.99."""
    space = quickstart_with(techniques={"ema": {"enabled": "search", "decay": [0.99, 0.999]}})
    with pytest.raises(SpaceError) as err:
        check_length(space, 1149)
    assert str(err.value) == (
        "quickstart: its shortest trial takes 204 optimiser steps (1,149 training images): "
        "ema: decay 0.99 over 204 optimiser steps leaves 13% of the average on the weights "
        "after the first step (at most 10% accepted); use ema.warmup: true, or more steps"
    )
    warm = {"enabled": "search", "decay": [0.99, 0.999], "warmup": True}
    check_length(quickstart_with(techniques={"ema": warm}), 1149)
    check_length(quickstart_with(techniques={"ema": {"enabled": "on", "decay": 0.99}}), 60_000)
    check_length(quickstart_with(), 1149)  # no technique with a length to check


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_passes_the_length_check_even_on_few_images(name: str) -> None:
    """Presets declare techniques with conditional ranges (SAM's rho on adaptive): only
    what can be too short is checked, and none of theirs is."""
    check_length(load(name), 1000)
