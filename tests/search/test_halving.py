"""Successive halving (ASHA) through a real Optuna study in SQLite storage: rungs compare
validation accuracy at equal epochs, a stopped trial is PRUNED (never COMPLETE, never on
the Pareto front, its partial accuracy in user attributes only), the baseline is never
stopped, and a pruned trial counts towards the trial target; and `search run quickstart
--pruner asha` end to end through real Ray (slow)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import display, export, halving, ledger, progress
from search import study as studies
from search.errors import UsageError
from search.report import Document, rungs
from search.runner import EPOCH_KEY, OUTCOMES_KEY, StudySearcher
from search.storage import open_storage
from search.study import StudyConfig
from search.worker import MEMBERS_KEY, SEED_KEY, TRIAL_KEY, train_trials
from spaces import SpaceError, load, parse
from trainer.data import load_dataset, make_splits

EPOCHS = 12  # rungs at epochs 1, 3 and 9 with min_epochs 1 and reduction 3


def asha_source(**pruner: object) -> dict:
    raw = copy.deepcopy(load("quickstart").source)
    raw["search"]["pruner"] = pruner or {"kind": "asha", "min_epochs": 1, "reduction": 3}
    raw["train"]["epochs"] = EPOCHS
    return raw


def new_study(tmp_path: Path, raw: dict, name: str = "s") -> tuple[optuna.Study, StudyConfig]:
    config = StudyConfig(
        space_source=raw, trials=20, seed=0, data_dir=None, epochs=None, weights_dir="w"
    )
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    return studies.create_or_load(storage, name, config.space(), config), config


class Driver:
    """Plays the searcher's part: asks the study for trials and reports their epochs."""

    def __init__(self, study: optuna.Study, config: StudyConfig):
        self.study, self.space = study, config.space()

    def ask(self) -> optuna.Trial:
        trial = self.study.ask()
        self.space.suggest(trial)
        return trial

    def epochs(self, trial: optuna.Trial, accuracies: list[float], first: int = 1) -> bool:
        """Report `accuracies` from epoch `first` on; True when the trial was pruned."""
        for epoch, accuracy in enumerate(accuracies, first):
            if halving.report(self.study, trial, self.space.pruner, EPOCHS, epoch, accuracy):
                return True
        return False

    def finish(self, trial: optuna.Trial, accuracy: float) -> None:
        values = {"accuracy": accuracy, "budget": 2000, "params": 1990, "latency_ms": 0.1}
        self.study.tell(trial, [values[o] for o in self.space.objectives])


def test_rungs_lie_at_min_epochs_times_powers_of_the_reduction_before_the_last() -> None:
    assert parse(asha_source()).pruner.rungs(12) == (1, 3, 9)
    assert parse(asha_source(kind="asha", min_epochs=2, reduction=2)).pruner.rungs(12) == (
        2,
        4,
        8,
    )
    assert parse(asha_source(kind="asha")).pruner.rungs(9) == (1, 3)  # 9 is the last epoch
    assert parse(asha_source(kind="none")).pruner.rungs(12) == ()
    assert load("quickstart").pruner.kind == "none"  # off unless asked for


def test_a_bare_pruner_name_takes_the_defaults() -> None:
    raw = asha_source()
    raw["search"]["pruner"] = "asha"
    assert parse(raw).pruner == parse(asha_source(kind="asha", min_epochs=1, reduction=3)).pruner
    raw["search"]["pruner"] = False  # YAML's bare `off`
    assert parse(raw).pruner.kind == "none"


@pytest.mark.parametrize(
    ("pruner", "message"),
    [
        ("hyperband", "search.pruner.kind = 'hyperband': expected one of 'asha', 'none'"),
        (3, "search.pruner = 3: expected one of asha, none, or {kind: asha"),
        ({"kind": "asha", "reduction": 1}, "search.pruner.reduction = 1: expected a value in [2"),
        ({"kind": "asha", "min_epochs": 0}, "search.pruner.min_epochs = 0: expected a value in"),
        ({"kind": "asha", "min_epochs": 12}, "min_epochs = 12: expected fewer than train.epochs"),
        ({"kind": "asha", "eta": 3}, "unknown key(s) 'eta' in search.pruner; accepted: kind"),
    ],
)
def test_bad_pruner_declarations_name_the_key_and_what_is_accepted(
    pruner: object, message: str
) -> None:
    raw = asha_source()
    raw["search"]["pruner"] = pruner
    with pytest.raises(SpaceError) as err:
        parse(raw, "space.yaml")
    assert message in str(err.value)


def test_rungs_compare_accuracy_at_equal_epochs_and_prune_what_falls_behind(
    tmp_path: Path,
) -> None:
    study, config = new_study(tmp_path, asha_source())
    driver = Driver(study, config)
    base = driver.ask()
    assert base.user_attrs["baseline"] is True
    other = driver.ask()
    # Both train to the end. Their epoch-1 and epoch-3 accuracies are what later trials
    # meet at those rungs, not their final ones (0.98, 0.99).
    assert not driver.epochs(other, [0.90, 0.65, 0.70])
    assert not driver.epochs(base, [0.30, 0.50, 0.60])  # below `other`, but the baseline
    assert not driver.epochs(other, [0.8] * 9, first=4)
    assert not driver.epochs(base, [0.8] * 9, first=4)
    driver.finish(other, 0.98)
    driver.finish(base, 0.99)

    early = driver.ask()
    assert driver.epochs(early, [0.50])  # behind 0.90 at epoch 1, of three: pruned there

    leader = driver.ask()  # first at epoch 1; at epoch 3 above 0.70 and 0.60, not 0.98
    assert not driver.epochs(leader, [0.95, 0.10, 0.80])  # epoch 2 is no rung: 0.10 passes
    late = driver.ask()
    assert not driver.epochs(late, [0.96, 0.90])
    assert driver.epochs(late, [0.75], first=3)  # [0.80 running, 0.75, 0.70, 0.60]: 1 kept

    states = {t.number: t.state for t in study.trials}
    assert states == {
        base.number: TrialState.COMPLETE,
        other.number: TrialState.COMPLETE,
        early.number: TrialState.PRUNED,
        leader.number: TrialState.RUNNING,
        late.number: TrialState.PRUNED,
    }
    pruned = study.trials[late.number]
    assert pruned.values is None  # partial accuracy in user attributes only
    assert pruned.user_attrs[ledger.PRUNED_EPOCH] == 3
    assert pruned.user_attrs[ledger.PARTIAL_ACCURACY] == 0.75
    assert pruned.user_attrs[ledger.EPOCH_ACCURACY] == [0.96, 0.90, 0.75]
    assert pruned.constraints == {halving.CONSTRAINT: (EPOCHS - 3) + (1 - 0.75) / 2}
    assert study.trials[early.number].user_attrs[ledger.PRUNED_EPOCH] == 1
    assert study.trials[base.number].constraints == {}


def test_tpe_counts_the_trials_stopped_latest_and_best_among_its_good_ones(
    tmp_path: Path,
) -> None:
    """With fewer completed trials than its "good" group holds, TPE fills the group with
    pruned ones: stopped at the latest rung first, then the most accurate there, as Optuna
    ranks the pruned trials of a single-objective study by their last reported value. A
    multi-objective study cannot report one: untied, the first pruned trials filled it."""
    # The split TPE draws its proposals from (private: this pins our use of it).
    from optuna.samplers._tpe.sampler import _split_trials

    study, config = new_study(tmp_path, asha_source())
    assert len(study.directions) > 1
    driver = Driver(study, config)
    base = driver.ask()
    driver.epochs(base, [0.9] * (EPOCHS - 1))
    driver.finish(base, 0.9)
    worst, poor, later = driver.ask(), driver.ask(), driver.ask()
    assert driver.epochs(worst, [0.1])  # stopped first, at epoch 1
    assert driver.epochs(poor, [0.5])  # then at epoch 1, ahead of `worst`
    assert driver.epochs(later, [0.95, 0.5, 0.5])  # through epoch 1, stopped at 3

    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    good, _ = _split_trials(study, trials, n_below=3)
    assert {t.number for t in good} == {base.number, later.number, poor.number}


def test_the_baseline_is_never_pruned_where_any_other_trial_would_be(tmp_path: Path) -> None:
    study, config = new_study(tmp_path, asha_source())
    driver = Driver(study, config)
    base, other = driver.ask(), driver.ask()
    assert not driver.epochs(other, [0.9])
    trials = study.get_trials(deepcopy=False)
    assert halving.stops(trials, driver.space.pruner, EPOCHS, base.number, 1, 0.1)
    assert not driver.epochs(base, [0.1, 0.1, 0.1])
    assert study.trials[base.number].state == TrialState.RUNNING


@pytest.mark.parametrize("objectives", [["accuracy", "budget", "latency_ms"], ["accuracy"]])
def test_pruned_trials_count_towards_the_target_and_are_never_on_the_front(
    tmp_path: Path, objectives: list[str]
) -> None:
    raw = asha_source()
    raw["search"]["objectives"] = objectives
    study, config = new_study(tmp_path, raw)
    driver = Driver(study, config)
    base = driver.ask()
    driver.epochs(base, [0.5] * EPOCHS)
    driver.finish(base, 0.5)
    # Pruned after one epoch with an accuracy above every finished trial's: still PRUNED,
    # with no values, so neither the front nor the sampler can take it for a result.
    strong = driver.ask()
    assert not driver.epochs(strong, [0.9])
    weak = driver.ask()
    assert driver.epochs(weak, [0.8])  # 0.8 > 0.5 finished, but behind 0.9 at epoch 1
    assert study.trials[weak.number].values is None

    assert ledger.counted(study.trials[weak.number])
    assert ledger.progress(study) == (2, 1)  # baseline + pruned done, `strong` running
    assert [t.number for t in study.best_trials] == [base.number]
    rows = export.rows(study, config, only_pareto=False)
    row = next(r for r in rows if r["number"] == weak.number)
    assert row["state"] == "PRUNED" and not row["pareto"] and row["accuracy"] is None
    assert (row["pruned_epoch"], row["partial_accuracy"]) == (1, 0.8)  # what it trained
    front = export.rows(study, config, only_pareto=True)
    assert [r["number"] for r in front] == [base.number]


def test_the_searcher_prunes_as_tune_reports_and_never_retrains_a_pruned_configuration(
    tmp_path: Path,
) -> None:
    """The searcher's part, called as Ray Tune calls it: per-epoch results, then (after a
    STOP) the trial's completion, then a proposal equal to the pruned configuration."""
    study, config = new_study(tmp_path, asha_source())
    messages: list[str] = []
    splits = make_splits(load_dataset("digits"), val_fraction=0.2, seed=0)
    board = display.Lines(study, config, write=messages.append)
    searcher = StudySearcher(
        study, config.space(), config, splits.image_shape, splits.num_classes, board
    )
    (base,), (other,) = (searcher.suggest(t)[MEMBERS_KEY] for t in ("a", "b"))
    epoch = {EPOCH_KEY: 1, "time_total_s": 3.0}
    assert not searcher.on_epoch("a", {**epoch, "epoch_accuracy": 0.9, TRIAL_KEY: base[TRIAL_KEY]})
    reported = {**epoch, "epoch_accuracy": 0.2, TRIAL_KEY: other[TRIAL_KEY]}
    assert searcher.on_epoch("b", reported)
    searcher.on_trial_complete("b", reported)  # Tune, after its STOP
    pruned = study.trials[other[TRIAL_KEY]]
    assert pruned.state == TrialState.PRUNED and ledger.counted(pruned)
    n = pruned.number
    trial = f"trial {n} ({progress.label(pruned, config.space())}, seed 0)"
    assert any(f"] {trial} epoch 1/12: accuracy 0.2000, " in m and " | " in m for m in messages)
    assert any(f"] {trial} pruned after epoch 1: accuracy 0.2000" in m for m in messages)

    study.enqueue_trial({k: v for k, v in other.items() if k not in (TRIAL_KEY, SEED_KEY)})
    (proposal,) = searcher.suggest("c")[MEMBERS_KEY]
    (again,) = [t for t in study.trials if t.user_attrs.get("duplicate_of") == n]
    assert again.state == TrialState.PRUNED and not ledger.counted(again)
    assert again.constraints == pruned.constraints != {}  # TPE ranks it as the original
    assert proposal[TRIAL_KEY] > again.number  # the searcher went on to a new configuration
    assert base[TRIAL_KEY] == 0


def test_a_pruned_member_leaves_its_fused_group_and_trains_no_further(tmp_path: Path) -> None:
    """A fused group of three (the baseline and +mixup at two seeds) behind three finished
    trials that reached 100% at the rung: halving stops both +mixup members at epoch 1,
    while the baseline, never stopped, trains on. The Ray Tune trial is not stopped; each
    stopped member is dropped by its worker as Tune's report returns (the searcher is called
    in that report here, as Tune calls it), so it reports no further epoch, and only the
    baseline's outcome comes back."""
    raw = asha_source()
    raw["train"]["epochs"] = 3  # one rung, at epoch 1
    config = StudyConfig(raw, 6, 0, None, None, str(tmp_path / "w"), design="oat", seeds=2)
    space = config.space()
    mixup = space.default_params({*space.baseline, "mixup"})
    queue = [
        (space.default_params(space.baseline), {ledger.SEED: 0, ledger.BASELINE: True}),
        (mixup, {ledger.SEED: 0}),
        (mixup, {ledger.SEED: 1}),
    ]
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = studies.create_or_load(storage, "s", space, config, queue=queue)
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(
                values=[1.0, 2000, 0.1], user_attrs={ledger.EPOCH_ACCURACY: [1.0, 1.0, 1.0]}
            )
        )
    splits = make_splits(load_dataset("digits"), val_fraction=0.2, seed=0)
    board = display.Lines(study, config, write=lambda _: None)
    searcher = StudySearcher(
        study, space, config, splits.image_shape, splits.num_classes, board, members=3
    )
    members = searcher.suggest("g")[MEMBERS_KEY]
    assert [m[TRIAL_KEY] for m in members] == [0, 1, 2]
    reports = []

    def tune_report(member: int, epoch: int, accuracy: float) -> None:
        number = members[member][TRIAL_KEY]
        reports.append((number, epoch))
        result = {EPOCH_KEY: epoch, "epoch_accuracy": accuracy, TRIAL_KEY: number}
        assert not searcher.on_epoch("g", {**result, "time_total_s": 1.0})  # no STOP

    outcomes = train_trials(members, config, splits, "s", "cpu", 1, tune_report)
    searcher.on_trial_complete("g", {OUTCOMES_KEY: outcomes})
    assert reports == [(0, 1), (1, 1), (2, 1), (0, 2), (0, 3)]
    assert [o[TRIAL_KEY] for o in outcomes] == [0]
    base, *pruned = study.trials[:3]
    assert base.state == TrialState.COMPLETE and base.user_attrs["group"] == 0
    for trial in pruned:
        assert trial.state == TrialState.PRUNED and trial.user_attrs[ledger.PRUNED_EPOCH] == 1
    assert not list((tmp_path / "w" / "s" / "stopped").iterdir())  # each mark taken


def test_the_samplers_keep_proposing_after_pruned_trials(tmp_path: Path) -> None:
    """TPE once crashed on PRUNED trials in multi-objective studies (optuna/optuna#5260)."""
    for sampler in ("tpe", "nsga2"):
        raw = asha_source()
        raw["search"]["sampler"] = sampler
        study, config = new_study(tmp_path, raw, name=sampler)
        driver = Driver(study, config)
        base = driver.ask()
        driver.epochs(base, [0.9])
        driver.finish(base, 0.9)
        for i in range(13):  # past TPE's 10 random start-up trials
            trial = driver.ask()
            if not driver.epochs(trial, [0.95 if i % 2 else 0.1]):
                driver.finish(trial, 0.95)
        assert study.get_trials(states=(TrialState.PRUNED,))
        for _ in range(3):
            driver.ask()


def test_the_pruner_option_overrides_the_space_and_is_kept_by_the_study(
    tmp_path: Path,
) -> None:
    raw = asha_source(kind="none", min_epochs=2, reduction=4)
    config = StudyConfig(
        space_source=raw,
        trials=4,
        seed=0,
        data_dir=None,
        epochs=None,
        weights_dir="w",
        pruner="asha",
    )
    pruner = config.space().pruner
    assert (pruner.kind, pruner.min_epochs, pruner.reduction) == ("asha", 2, 4)
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = studies.create_or_load(storage, "s", config.space(), config)
    assert studies.load_config(study).space().pruner == pruner  # what `search resume` runs
    with pytest.raises(UsageError, match="another pruner"):
        studies.create_or_load(storage, "s", config.space(), replace(config, pruner="none"))


def test_pruner_options_are_checked_before_anything_runs(search) -> None:
    bad = search("run", "quickstart", "--pruner", "asha", "--epochs", "1")
    assert bad.returncode == 2
    assert "successive halving needs a rung before the last epoch" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert search("run", "quickstart", "--pruner", "sometimes").returncode == 2


def test_progress_prints_parameter_counts_with_thousands_separators() -> None:
    assert progress.value("params", 139781.0) == "139,781"
    assert progress.value("accuracy", 0.91234) == "0.9123"
    assert [progress.duration(s) for s in (45, 720, 3900)] == ["45s", "12m00s", "1h05m"]
    table = export.summary(
        [
            {
                "number": 0,
                "accuracy": 0.9,
                "params": 139781,
                "latency_ms_alone": None,
                "techniques": "depthwise + gap",
            }
        ],
        ("accuracy", "params"),
    )
    assert "139,781" in table and "depthwise + gap" in table


@pytest.mark.slow
def test_quickstart_with_asha_prunes_trials_and_keeps_them_off_the_front(
    search, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    run = search(
        "run", "quickstart", "--pruner", "asha", "--trials", "8", "--epochs", "4",
        "--parallel", "2", "--study", "qa", "--storage", url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    assert "trial 0 (depthwise + gap, 2,000 params, seed 0) epoch 1/4: accuracy" in run.stdout
    assert "| ETA " in run.stdout
    assert "[8/8]" in run.stdout and "pruned after epoch" in run.stdout

    study = optuna.load_study(study_name="qa", storage=url)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert pruned, "no trial was pruned"
    assert len(pruned) + len(complete) == 8  # pruned trials count towards the target
    assert study.trials[0].user_attrs["baseline"] and study.trials[0].state == TrialState.COMPLETE
    assert {t.number for t in study.best_trials} <= {t.number for t in complete}
    weights = tmp_path / "runs" / "weights" / "qa"
    for trial in pruned:
        epoch = trial.user_attrs[ledger.PRUNED_EPOCH]
        assert trial.values is None and epoch in (1, 3)  # rungs of 4 epochs
        assert len(trial.user_attrs[ledger.EPOCH_ACCURACY]) == epoch
        assert trial.user_attrs[ledger.PARTIAL_ACCURACY] == trial.user_attrs["epoch_accuracy"][-1]
        assert not (weights / f"trial_{trial.number}.pt").exists()
    for trial in complete:
        assert len(trial.user_attrs[ledger.EPOCH_ACCURACY]) == 4

    exported = search("export", "qa", "--storage", url, "--pareto", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert {row["state"] for row in json.loads(exported.stdout)} == {"COMPLETE"}


def test_the_report_shows_each_rung_with_the_pruned_trials_it_judged(tmp_path: Path) -> None:
    """Most trials of a halving study end pruned, without values; the report's rung section
    is where their accuracies at the rungs show, with where each trial ended."""
    study, config = new_study(tmp_path, asha_source())
    driver = Driver(study, config)
    base = driver.ask()
    driver.epochs(base, [0.5] * EPOCHS)
    driver.finish(base, 0.9)
    strong = driver.ask()
    assert not driver.epochs(strong, [0.7, 0.7, 0.6])  # first at 1; at 3 above 0.5
    weak = driver.ask()
    assert driver.epochs(weak, [0.4])  # behind 0.7 and 0.5 at epoch 1
    frame = rungs.rung_frame(study.get_trials(deepcopy=False), 1)
    assert sorted(zip(frame["number"], frame["accuracy"], strict=True)) == [
        (base.number, 0.5),
        (strong.number, 0.7),
        (weak.number, 0.4),
    ]
    doc = Document("rungs")
    rungs.rung_sections(doc, study, config.space())
    section = doc.markdown()
    assert "Rungs at epochs 1, 3, 9 of 12" in section
    assert "## Rung at epoch 1: 3 trials reached it, 2 went on" in section
    assert "## Rung at epoch 3: 2 trials reached it, 1 went on" in section  # strong runs
    first = section[section.index("Rung at epoch 1") : section.index("Rung at epoch 3")]
    lines = first.splitlines()
    leaders = [
        next(n for n, line in enumerate(lines) if line.startswith(f"| {t.number} | {acc} |"))
        for t, acc in ((strong, "70.00"), (base, "50.00"), (weak, "40.00"))
    ]
    assert leaders == sorted(leaders)  # best first
    ended = [lines[n].rsplit(" | ", 1)[1] for n in leaders]
    assert ended == ["running |", "complete |", "pruned at epoch 1 |"]
