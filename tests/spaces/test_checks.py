"""The checks of a space against its data: a baseline that cannot meet its budget is refused
before anything starts, with a message that fits the budget policy in force."""

from __future__ import annotations

import copy

import pytest

from spaces import SpaceError, check_budget, load, parse

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
