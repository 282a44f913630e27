"""A study's configurations over seeds and their noise-aware front (search/configurations.py),
on planted trials: issue 19's twin leaves the front, seeds group by configuration, and the
seeds' spread keeps an accuracy difference inside it."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import configurations, ledger

OBJECTIVES = ("accuracy", "budget", "latency_ms")
DIRECTIONS = ("maximize", "minimize", "minimize")


def trial(
    number: int, accuracy: float, latency: float, *, params: dict, seed: int = 0, **attrs
) -> optuna.trial.FrozenTrial:
    dist = {k: optuna.distributions.CategoricalDistribution([False, True]) for k in params}
    made = create_trial(
        state=TrialState.COMPLETE,
        params=params,
        distributions=dist,
        values=[accuracy, 400, latency],
        user_attrs={"seed": seed, "latency_iqr_ms": 0.0002, **attrs},
    )
    made.number = number
    return made


SIX, TWELVE = {"label_smoothing.enabled": True}, {"mixup.enabled": True}


def test_the_twin_of_issue_19_leaves_the_front_and_the_strict_front_keeps_it() -> None:
    trials = [trial(6, 0.8438, 0.0667, params=SIX), trial(12, 0.7083, 0.0661, params=TWELVE)]
    front = configurations.noise_aware_front(trials, OBJECTIVES, DIRECTIONS)
    assert [c.numbers for c in front] == [(6,)]
    kept = front[0]
    assert kept.noise == pytest.approx((0.0, 0.0, 0.02 * 0.0667))  # one seed: accuracy as is


def test_seeds_of_one_configuration_are_one_point_with_their_mean_and_spread() -> None:
    trials = [
        trial(0, 0.90, 0.0667, params=SIX, seed=0),
        trial(1, 0.76, 0.0661, params=TWELVE, seed=0),
        trial(2, 0.84, 0.0670, params=SIX, seed=1),
        trial(3, 0.62, 0.0660, params=TWELVE, seed=1),
        trial(4, 0.79, 0.0664, params=SIX, seed=2),
        trial(5, 0.745, 0.0662, params=TWELVE, seed=2),
        trial(6, 0.99, 0.01, params=SIX, seed=0, duplicate_of=0),  # reused: no seed
    ]
    found = configurations.configurations(trials, OBJECTIVES)
    assert [c.numbers for c in found] == [(0, 2, 4), (1, 3, 5)]
    six = found[0]
    assert six.means[0] == pytest.approx(0.8433333)
    interval = six.interval(0)
    assert interval.n == 3 and six.noise[0] == pytest.approx((interval.high - interval.low) / 2)
    # 13.5 points apart, inside the 95% intervals of the seeds (14 and 19 points): both stay
    front = configurations.noise_aware_front(trials, OBJECTIVES, DIRECTIONS)
    assert [c.numbers for c in front] == [(0, 2, 4), (1, 3, 5)]


def test_a_designed_study_groups_by_label() -> None:
    trials = [
        trial(0, 0.8, 0.05, params=SIX, config="+ls", seed=0),
        trial(1, 0.8, 0.05, params=SIX, config="+ls", seed=1),
    ]
    assert [c.numbers for c in configurations.configurations(trials, OBJECTIVES)] == [(0, 1)]
    assert ledger.configuration(trials[0]) == "+ls"
    assert configurations.noise_aware_front([], OBJECTIVES, DIRECTIONS) == []
