"""The formatters of progress lines and `search status`: durations, and the best trial
so far on the first objective."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optuna.trial import TrialState, create_trial

from search import progress
from spaces import load


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "-3s"),
        (0, "0s"),
        (59.4, "59s"),
        (60, "1m00s"),
        (61, "1m01s"),
        (725, "12m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3900, "1h05m"),
        (90_000, "25h00m"),
    ],
)
def test_duration_of_progress_lines_and_status(seconds: float, text: str) -> None:
    assert progress.duration(seconds) == text


def finished(values: list[float], state: TrialState = TrialState.COMPLETE):
    return create_trial(state=state, values=values if state == TrialState.COMPLETE else None)


def test_the_best_trial_is_best_on_the_first_objective_in_its_direction() -> None:
    space = load("quickstart")  # accuracy (maximize) first
    assert space.directions[0] == "maximize"
    trials = [finished([0.5, 10, 1.0]), finished([0.8, 99, 9.0]), finished([0.8, 1, 0.1])]
    trials.append(finished([], TrialState.FAIL))
    assert progress.best(trials, space) is trials[1]  # the first of equals
    assert progress.best([finished([], TrialState.RUNNING)], space) is None
    assert progress.best([], space) is None


def test_a_minimised_first_objective_picks_the_lowest() -> None:
    space = replace(load("quickstart"), objectives=("latency_ms", "accuracy"))
    assert space.directions[0] == "minimize"
    trials = [finished([3.0, 0.9]), finished([1.0, 0.1]), finished([2.0, 0.5])]
    assert progress.best(trials, space) is trials[1]
