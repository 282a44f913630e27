"""The formatters of progress lines and `search status`: durations, a trial's label and
outcome, and the best configuration so far (the best mean over its seeds)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search import progress
from spaces import load
from spaces.space import BUDGET_PARAM, TechniqueChoice


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


def finished(
    values: list[float],
    state: TrialState = TrialState.COMPLETE,
    params: dict | None = None,
    **attrs: object,
) -> FrozenTrial:
    params = params or {}
    return create_trial(
        state=state,
        values=values if state == TrialState.COMPLETE else None,
        params=params,
        distributions={k: CategoricalDistribution([v]) for k, v in params.items()},
        user_attrs=attrs,
    )


def numbered(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials numbered in order, as a study numbers them."""
    for number, trial in enumerate(trials):
        trial.number = number
    return trials


TECHNIQUES = ("depthwise", "gap", "blurpool", "se", "label_smoothing", "mixup", "cutout")


def on(*names: str) -> dict:
    """Parameters with `names` switched on and every other quickstart technique off."""
    params = {f"{n}.enabled": n in names for n in TECHNIQUES}
    if "blurpool" in names:
        params["blurpool.size"] = 3
    return params


def test_a_trial_is_labelled_by_its_design_label_else_by_its_techniques_on() -> None:
    space = load("quickstart")
    assert progress.label(finished([0.9], config="+se"), space) == "+se"
    assert progress.label(finished([0.9], params=on("blurpool", "mixup")), space) == (
        "blurpool + mixup"
    )
    assert progress.label(finished([0.9], params=on()), space) == "no technique"
    fixed = replace(space, techniques={**space.techniques, "gap": TechniqueChoice("gap", "on", {})})
    assert progress.label(finished([0.9], params=on()), fixed) == "no searched technique"
    levels = {**on("gap"), BUDGET_PARAM: 2000}
    assert progress.label(finished([0.9], params=levels), space) == "gap, 2,000 params"


def test_how_a_trial_ended_reads_for_every_outcome() -> None:
    objectives = ("accuracy", "budget", "latency_ms")
    assert progress.outcome(finished([0.91, 2000, 0.25]), objectives) == (
        "done: accuracy 0.91, budget 2,000, latency_ms 0.25"
    )
    pruned = finished([], TrialState.PRUNED, pruned_epoch=1, partial_accuracy=0.2)
    assert progress.outcome(pruned, objectives) == (
        "pruned after epoch 1: accuracy 0.2000 was below its rung's top"
    )
    failed = finished([], TrialState.FAIL, failure="diverged", reason="loss is nan")
    assert progress.outcome(failed, objectives) == "failed (diverged): loss is nan"


def test_the_best_configuration_is_the_best_mean_over_its_seeds_not_the_best_seed() -> None:
    space = load("quickstart")  # accuracy (maximize) first
    lucky = [
        finished([a, 2000, 1.0], config="+blurpool", seed=s) for s, a in enumerate((0.95, 0.7, 0.7))
    ]
    steady = [
        finished([a, 1000, 0.5], config="+se", seed=s) for s, a in enumerate((0.8, 0.82, 0.84))
    ]
    trials = [*lucky, *steady, finished([0.99], TrialState.FAIL, config="+mixup")]
    trials = numbered(trials)
    best = progress.leader(trials, space)
    assert best is not None and best.label == "+se" and best.numbers == (3, 4, 5)
    assert best.means == pytest.approx((0.82, 1000, 0.5))
    assert best.describe(space.objectives[:1]) == "+se, mean of 3 seeds: accuracy 0.82"
    assert best.describe(space.objectives) == (
        "+se, mean of 3 seeds: accuracy 0.82, budget 1,000, latency_ms 0.5"
    )


def test_without_seeds_to_average_the_best_configuration_is_the_best_trial() -> None:
    space = load("quickstart")
    trials = [
        finished([0.5, 10, 1.0], params=on("se")),
        finished([0.8, 99, 9.0], params=on("gap")),
        finished([0.8, 1, 0.1], params=on("mixup")),  # equal: the first of equals wins
        finished([], TrialState.FAIL),
        finished([0.9, 1, 0.1], params=on("cutout"), duplicate_of=0),  # reuses a result
    ]
    trials = numbered(trials)
    best = progress.leader(trials, space)
    assert best is not None and best.numbers == (1,)
    assert best.describe(space.objectives[:1]) == "trial 1 (gap), accuracy 0.8"
    assert progress.leader([finished([], TrialState.RUNNING)], space) is None
    assert progress.leader([], space) is None


def test_a_minimised_first_objective_picks_the_lowest_mean() -> None:
    space = replace(load("quickstart"), objectives=("latency_ms", "accuracy"))
    assert space.directions[0] == "minimize"
    trials = [
        finished([3.0, 0.9], params=on("se")),
        finished([1.0, 0.1], params=on("gap")),
        finished([2.0, 0.5], params=on("mixup")),
    ]
    trials = numbered(trials)
    assert progress.leader(trials, space).numbers == (1,)
