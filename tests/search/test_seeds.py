"""Seeds beyond the first (search/seeds.py): a search's configurations topped up to K paired
seeds, and a design's sequential rounds, each derived from the trials alone so that a
resumed study recomputes them. Studies live in Optuna's in-memory storage; trials are
planted with the accuracies a test needs (no training: the searcher's run with training is
in test_searcher.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from search import ablate, cli, ledger, seeds
from search import study as studies
from search.study import DESIGN_ATTR, StudyConfig
from spaces import load, parse

OBJECTIVES = ["accuracy", "budget", "latency_ms"]  # the quickstart's


def config(tmp_path: Path, **kw) -> StudyConfig:
    space = load("quickstart")
    base = dict(space_source=space.source, trials=6, seed=0, data_dir=None, epochs=1)
    return StudyConfig(**base, weights_dir=str(tmp_path), **kw)


def plant(study: optuna.Study, state: TrialState, params: dict, **attrs) -> None:
    """A finished trial with `params` and user attributes `attrs` (accuracy among them)."""
    values = [attrs["accuracy"], 2000, 0.3] if state == TrialState.COMPLETE else None
    dist = {k: optuna.distributions.CategoricalDistribution([False, True]) for k in params}
    study.add_trial(
        create_trial(
            state=state, params=params, distributions=dist, values=values, user_attrs=attrs
        )
    )


A, B, C = ({"se.enabled": x, "gap.enabled": y} for x, y in [(1, 0), (0, 1), (1, 1)])


def test_a_configuration_that_trained_gets_the_seeds_it_lacks(tmp_path: Path) -> None:
    settings = config(tmp_path, seeds=3)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    plant(study, TrialState.COMPLETE, A, seed=0, accuracy=0.9)
    plant(study, TrialState.FAIL, A, seed=1, failure=ledger.INTERRUPTED)  # re-run elsewhere
    plant(study, TrialState.COMPLETE, B, seed=0, accuracy=0.8)
    plant(study, TrialState.COMPLETE, B, seed=1, accuracy=0.8, duplicate_of=0)  # no seed
    plant(study, TrialState.FAIL, C, seed=0, failure=ledger.OVER_BUDGET)  # never trains
    plant(study, TrialState.FAIL, {"se.enabled": 0}, seed=0, failure=ledger.ERROR)  # unbuildable

    queued = seeds.missing_seeds(study.trials, settings)

    assert [(p, a[ledger.SEED]) for p, a in queued] == [(A, 2), (B, 1), (B, 2)]
    assert seeds.top_up(study, settings) == 3
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[ledger.SEED] for t in waiting] == [2, 1, 2]
    assert seeds.top_up(study, settings) == 0  # queued seeds are the configuration's
    # A design queues its own seeds, and one seed needs none.
    for other in (config(tmp_path, seeds=3, design="oat"), config(tmp_path, seeds=1)):
        assert seeds.top_up(study, other) == 0


def test_the_baseline_keeps_its_identity_in_its_other_seeds(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    plant(study, TrialState.RUNNING, A, seed=0, baseline=True, accuracy=0.0)
    (params, attrs), _ = seeds.missing_seeds(study.trials, config(tmp_path, seeds=3))
    assert params == A and attrs == {ledger.BASELINE: True, ledger.SEED: 1}


EFFECTS = {"baseline": 0.0, "+se": 0.10, "+cutout": 0.01, "+mixup": 0.0}
# per seed: a shift every configuration shares, and each one's own noise
SHIFT = [0.0, 0.02, -0.01, 0.015, -0.02, 0.01]
NOISE = {  # +se: 0.1 with almost no spread; the others spread as much as they move
    "baseline": [0.0] * 6,
    "+se": [0.001, -0.001, 0.0, 0.001, 0.0, -0.001],
    "+mixup": [0.01, -0.02, 0.015, -0.01, 0.02, -0.005],
    "+cutout": [0.02, -0.015, 0.0, -0.02, 0.01, 0.025],
}


class Design:
    """A designed study with sequential seeds: oat on three techniques (baseline, +se,
    +cutout, +mixup; three comparisons against the baseline), trials planted per round."""

    def __init__(self, tmp_path: Path, min_seeds: int = 3, max_seeds: int = 5):
        raw = load("quickstart").source
        raw = {**raw, "techniques": {t: "search" for t in ("se", "cutout", "mixup")}}
        raw["search"] = {**raw["search"], "baseline": []}
        self.space = parse(raw)
        self.design = ablate.make(self.space, "oat")
        assert [c.label for c in self.design.configs] == list(EFFECTS)
        first = ablate.seeds(0, min_seeds)
        self.settings = StudyConfig(
            space_source=raw,
            trials=4 * min_seeds,
            seed=0,
            data_dir=None,
            epochs=1,
            weights_dir=str(tmp_path),
            design="oat",
            seeds=min_seeds,
            max_seeds=max_seeds,
        )
        self.study = studies.create_or_load(
            optuna.storages.InMemoryStorage(),
            "auto",
            self.space,
            self.settings,
            queue=self.design.queue(self.space, first),
            attrs={DESIGN_ATTR: self.design.attrs(first)},
        )

    def train_queued(self) -> list[tuple[str, int]]:
        """Every queued trial asked and told its planted accuracy, as a run would."""
        trained = []
        while self.study.get_trials(states=(TrialState.WAITING,)):
            trial = self.study.ask()
            label, seed = trial.user_attrs[ledger.CONFIG], trial.user_attrs[ledger.SEED]
            accuracy = 0.8 + SHIFT[seed] + EFFECTS[label] + NOISE[label][seed]
            trial.set_user_attr("accuracy", accuracy)
            self.study.tell(trial, [accuracy, 2000, 0.3])
            trained.append((label, seed))
        return trained

    def target(self) -> int:
        return studies.load_config(self.study).trials


def test_an_open_comparison_and_its_reference_get_one_more_seed_a_round(tmp_path: Path) -> None:
    design = Design(tmp_path)
    assert seeds.advance(design.study, design.settings) is None  # the first round is queued
    assert len(design.train_queued()) == 12

    step = seeds.advance(design.study, design.settings)

    assert step is not None and step.queued == 3
    assert step.message == (
        "sequential seeds: 1 of 3 comparisons resolved; one more paired seed for "
        "baseline (seed 3), +cutout (seed 3), +mixup (seed 3)"
    )
    assert design.target() == 15
    assert seeds.advance(design.study, design.settings) is None  # queued: not complete
    assert design.train_queued() == [("baseline", 3), ("+cutout", 3), ("+mixup", 3)]

    step = seeds.advance(design.study, design.settings)
    assert step.queued == 3 and design.target() == 18
    design.train_queued()
    step = seeds.advance(design.study, design.settings)  # 5 seeds: the plan's maximum
    assert step.queued == 0
    assert step.message == (
        "sequential seeds: 1 of 3 comparisons resolved, 2 open at the maximum of 5 seeds"
    )
    trials = design.study.trials
    assert len(trials) == 18 and ledger.done(trials) == design.target()
    # paired: every configuration trained seeds 0, 1, 2, ... in order, none twice
    by_label: dict[str, list[int]] = {}
    for t in trials:
        by_label.setdefault(t.user_attrs[ledger.CONFIG], []).append(t.user_attrs[ledger.SEED])
    assert by_label == {
        "baseline": [0, 1, 2, 3, 4],
        "+se": [0, 1, 2],
        "+cutout": [0, 1, 2, 3, 4],
        "+mixup": [0, 1, 2, 3, 4],
    }


def test_a_round_lost_to_a_crash_is_recomputed(tmp_path: Path) -> None:
    """The target is raised before the round is queued: a driver killed between the two
    leaves a complete round with a raised target, and the next run queues the same round."""
    design = Design(tmp_path)
    design.train_queued()
    studies.set_target(design.study, 15)  # as a driver killed before its enqueue left it
    step = seeds.advance(design.study, design.settings)
    assert step.queued == 3 and design.target() == 15
    waiting = design.study.get_trials(states=(TrialState.WAITING,))
    assert [(t.user_attrs[ledger.CONFIG], t.user_attrs[ledger.SEED]) for t in waiting] == [
        ("baseline", 3),
        ("+cutout", 3),
        ("+mixup", 3),
    ]


def test_an_interrupted_seed_is_trained_again_not_replaced(tmp_path: Path) -> None:
    design = Design(tmp_path)
    design.train_queued()
    seeds.advance(design.study, design.settings)
    # the round's +mixup seed was interrupted: the run re-queues it (ledger), not a new seed
    trial = design.study.ask()
    assert trial.user_attrs[ledger.CONFIG] == "baseline"
    design.train_queued()
    mixup = next(
        t
        for t in design.study.trials
        if t.user_attrs[ledger.CONFIG] == "+mixup" and t.user_attrs[ledger.SEED] == 3
    )
    assert mixup.state == TrialState.COMPLETE
    ledger.fail(design.study, trial.number, ledger.INTERRUPTED, "stopped")
    assert seeds.advance(design.study, design.settings) is None  # the round is not complete
    assert ledger.requeue_interrupted(design.study) == 1
    assert seeds.advance(design.study, design.settings) is None
    assert design.train_queued() == [("baseline", 3)]
    assert seeds.advance(design.study, design.settings).queued == 3  # round 3


def test_fixed_seeds_have_no_rounds(tmp_path: Path) -> None:
    design = Design(tmp_path)
    fixed = StudyConfig(**{**vars(design.settings), "max_seeds": None})
    design.train_queued()
    assert seeds.plan(fixed) is None and seeds.advance(design.study, fixed) is None
    assert seeds.plan(design.settings) == seeds.Plan(3, 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "auto", "--min-seeds", "5", "--max-seeds", "3"], "--min-seeds 5 is above"),
        (["--seeds", "auto", "--max-seeds", "70"], "min seeds <= max seeds <= 64"),
        (["--seeds", "auto", "--min-seeds", "1"], "expected 2 <= min seeds"),
        (["--seeds", "3", "--max-seeds", "5"], "--max-seeds goes with --seeds auto"),
        (["--min-effect", "0.5"], "--min-effect goes with --seeds auto, not --seeds 3"),
        (["--seeds", "auto", "--min-effect", "0"], "expected accuracy points between 0 and 100"),
        (["--seeds", "some"], "argument --seeds: 'some': expected an integer"),
    ],
)
def test_bad_seed_arguments_get_one_message_and_status_2(
    args: list[str], message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert search_cli("ablate", "quickstart", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no runs/, no storage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "auto"], "'auto' is for `search ablate`"),
        (["--seeds", "0"], "argument --seeds: '0': expected an integer in [1, 1000]"),
    ],
)
def test_a_search_takes_a_number_of_seeds(args: list[str], message: str, capsys) -> None:
    assert search_cli("run", "quickstart", *args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_dry_run_of_sequential_seeds_says_how_many_trials_it_may_take(capsys) -> None:
    assert (
        search_cli("ablate", "quickstart", "--seeds", "auto", "--max-seeds", "6", "--dry-run") == 0
    )
    out = capsys.readouterr().out
    assert "8 configurations x 3..6 seeds (0, 1, 2, then one more a round" in out
    assert "= 24..48 trials" in out


def search_cli(*args: str) -> int:
    """`search ARGS` in this process (the subprocess runs are in test_cli.py): its status."""
    try:
        return cli.main(list(args))
    except SystemExit as stop:  # argparse's errors
        return int(stop.code)
