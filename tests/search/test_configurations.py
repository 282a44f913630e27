"""A study's configurations over seeds and their noise-aware front (search/configurations.py),
on planted trials: issue 19's twin leaves the front, seeds group by configuration, and the
seeds' spread keeps an accuracy difference inside it."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import configurations, export, ledger
from search import study as studies
from search.front import RULE
from search.study import StudyConfig
from spaces import load

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


def planted_study(accuracy: dict[int, list[float]], latency: dict[int, float]) -> tuple:
    """A quickstart study (accuracy, budget, latency_ms) with each configuration's seeds
    planted in seed order, every configuration at 400 parameters."""
    space = load("quickstart")
    settings = StudyConfig(space.source, 6, 0, None, None, "/nonexistent", seeds=3)
    study = studies.create_or_load(
        optuna.storages.InMemoryStorage(), "p", space, settings, queue=[]
    )
    configs = {6: ["label_smoothing"], 12: ["mixup"]}  # every parameter given: no draw
    for seed in range(max(len(v) for v in accuracy.values())):
        for key, values in accuracy.items():
            if seed < len(values):
                params = {**space.default_params(configs[key]), "budget.params": 400}
                study.enqueue_trial(params, user_attrs={"seed": seed})
                trial = study.ask()
                space.suggest(trial, seed=seed)
                trial.set_user_attr("latency_iqr_ms", 0.0002)
                study.tell(trial, [values[seed], 400, latency[key]])
    return study, settings


def test_issue_19s_twin_is_exported_on_the_strict_front_only_and_printed_off_it() -> None:
    study, settings = planted_study({6: [0.8438], 12: [0.7083]}, {6: 0.0667, 12: 0.0661})
    rows = export.rows(study, settings, only_pareto=False)
    assert [(r["pareto"], r["front"]) for r in rows] == [(True, True), (True, False)]
    assert [r["number"] for r in export.rows(study, settings, only_pareto=True)] == [0]
    strict = export.rows(study, settings, only_pareto=True, strict=True)
    assert [r["number"] for r in strict] == [0, 1]
    printed = export.front_summary(study, settings)
    lines = printed.splitlines()
    assert lines[1].split()[:4] == ["0", "1", "0.8438", "400"]  # one seed: no accuracy band
    assert "0.0667 ± 0.0013" in lines[1] and len(lines) > 2 and "1 of them not on" in printed
    assert " ".join(printed.split()).count(" ".join(RULE.split())) == 1  # the rule, wrapped


def test_with_three_seeds_the_front_is_printed_per_configuration_with_its_interval() -> None:
    study, settings = planted_study(
        {6: [0.90, 0.84, 0.79], 12: [0.76, 0.62, 0.745]}, {6: 0.0667, 12: 0.0661}
    )
    rows = export.rows(study, settings, only_pareto=False)
    assert [r["seed"] for r in rows] == [0, 0, 1, 1, 2, 2]  # a row per seed
    assert all(r["front"] for r in rows)  # 13.5 points inside both configurations' spread
    table = export.front_summary(study, settings).splitlines()
    assert table[1].split()[:3] == ["0,", "2,", "4"]
    half = configurations.configurations(study.trials, OBJECTIVES)[0].noise[0]
    assert f"0.8433 ± {half:.4f}" in table[1] and table[2].split()[3] == "3"
