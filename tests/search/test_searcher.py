"""The searcher's bookkeeping, on Optuna's in-memory storage with real training on the embedded
digits: each configuration trained once, build errors recorded, interrupted trials queued
again, complete rows. Ray Tune's part (scheduling) is played by `drive`, which calls the
searcher as Tune does and trains each proposal with the worker's own function; the runs
through real Ray are in test_search.py."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from ray.tune.search import Searcher
from torch.nn.modules.module import register_module_forward_pre_hook

from search import ablate, display, export, ledger
from search import study as studies
from search.runner import OUTCOMES_KEY, StudySearcher
from search.study import StudyConfig
from search.worker import MEMBERS_KEY, SEED_KEY, TRIAL_KEY, train_trials
from spaces import Space, load
from spaces.listing import finite_configurations
from trainer.data import Splits, load_dataset, make_splits
from trainer.models.fused import FusedConv2d

# Three switches with fixed hyperparameters: 2**3 = 8 configurations.
THREE_SWITCHES = """name: three
description: three switches, eight configurations
data: {dataset: digits, val_fraction: 0.2}
model: {stem_channels: 4, stages: [{channels: 8}, {channels: 8}]}
train: {epochs: 1, batch_size: 128}
search: {trials: 8, sampler: SAMPLER, objectives: [accuracy, latency_ms]}
techniques:
  gap: search
  se: {enabled: search, ratio: 0.25}
  label_smoothing: {enabled: search, eps: 0.1}
"""

# 8x8 images through three downsamplings leave a 1x1 map: BlurPool's reflect padding of
# 2 pixels (size 5) cannot be built there.
UNBUILDABLE = """name: unbuildable
data: {dataset: digits, val_fraction: 0.2}
model: {stem_channels: 4, stages: [{channels: 4}, {channels: 4}, {channels: 4}]}
train: {epochs: 1, batch_size: 128}
search: {trials: 2}
techniques: {blurpool: {enabled: search, size: [5]}}
"""


@pytest.fixture(scope="module")
def splits() -> Splits:
    return make_splits(load_dataset("digits", None), val_fraction=0.2, seed=0)


def space_file(tmp_path: Path, text: str, sampler: str = "tpe") -> Space:
    path = tmp_path / "space.yaml"
    path.write_text(text.replace("SAMPLER", sampler))
    return load(str(path))


class Search:
    """A study in Optuna's in-memory storage (SQLite's commits would cost most of these
    tests' time; the runs in test_search.py use SQLite) and the searcher that drives it."""

    def __init__(
        self,
        tmp_path: Path,
        space: Space,
        splits: Splits,
        trials: int,
        seeds: int | None = None,
        members: int = 1,
        search_seeds: int = 1,
    ):
        """`seeds`: a designed study, its oat design at that many seeds; `members`: `--fuse`;
        `search_seeds`: a search's seeds per configuration (`search run --seeds K`)."""
        self.splits, self.messages, self.members = splits, [], members
        self.config = StudyConfig(
            space_source=space.source,
            trials=trials,
            seed=0,
            data_dir=None,
            epochs=None,
            weights_dir=str(tmp_path / "weights"),
            design="oat" if seeds else None,
            seeds=seeds or search_seeds,
        )
        queue = ablate.oat(space).queue(space, range(seeds)) if seeds else None
        storage = optuna.storages.InMemoryStorage()
        self.study = studies.create_or_load(storage, "s", space, self.config, queue=queue)
        self.searcher = self.new_searcher()

    def new_searcher(self) -> StudySearcher:
        """A fresh searcher, as a new `search run` or `search resume` makes."""
        space, splits = self.config.space(), self.splits
        return StudySearcher(
            self.study,
            space,
            self.config,
            splits.image_shape,
            splits.num_classes,
            display.Lines(self.study, self.config, write=self.messages.append),
            self.members,
        )

    def suggest(self, trial_id: str) -> dict:
        """The searcher's proposal of one trial (unfused: a group of one), as its member."""
        (member,) = self.searcher.suggest(trial_id)[MEMBERS_KEY]
        return member

    def train(self, trial_id: str, member: dict) -> None:
        self.train_group(trial_id, [member])

    def train_group(self, trial_id: str, members: list[dict]) -> None:
        outcomes = train_trials(members, self.config, self.splits, "s", "cpu", 1)
        self.searcher.on_trial_complete(trial_id, {OUTCOMES_KEY: outcomes})

    def drive(self) -> None:
        """What Tune does with one trial at a time: ask, train, report, until FINISHED."""
        for n in range(100):
            proposal = self.searcher.suggest(f"t{n}")
            if proposal == Searcher.FINISHED:
                return
            assert proposal is not None, "nothing running, yet the searcher asks to wait"
            self.train_group(f"t{n}", proposal[MEMBERS_KEY])
        pytest.fail("the search did not end")

    def trained(self) -> list[optuna.trial.FrozenTrial]:
        """The trials that trained a configuration to the end."""
        return [
            t
            for t in self.study.get_trials(states=(TrialState.COMPLETE,))
            if "duplicate_of" not in t.user_attrs
        ]


def keys(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    return [ledger.config_key(t.params, t.user_attrs["seed"]) for t in trials]


def test_a_finite_space_lists_its_configurations(tmp_path: Path) -> None:
    configurations = finite_configurations(space_file(tmp_path, THREE_SWITCHES))
    assert configurations is not None and len(configurations) == 8
    assert len({ledger.config_key(c, 0) for c in configurations}) == 8
    # Conditional parameters: blurpool's size exists only when blurpool is on.
    blur = finite_configurations(space_file(tmp_path, UNBUILDABLE))
    assert blur == [{"blurpool.enabled": False}, {"blurpool.enabled": True, "blurpool.size": 5}]
    assert finite_configurations(load("quickstart")) is None  # continuous ranges


def test_the_duplicate_key_is_the_parameters_and_the_seed() -> None:
    a = {"gap.enabled": True, "se.enabled": False}
    assert ledger.config_key(a, 0) == ledger.config_key(dict(reversed(a.items())), 0)
    assert ledger.config_key(a, 0) != ledger.config_key(a, 1)
    assert ledger.config_key(a, 0) != ledger.config_key({**a, "se.enabled": True}, 0)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_a_target_of_8_in_a_space_of_8_trains_each_configuration_once(
    sampler: str, tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES, sampler), splits, trials=8)
    search.drive()
    trained = search.trained()
    assert len(trained) == 8 and len(set(keys(trained))) == 8
    assert ledger.progress(search.study) == (8, 0)
    by_number = {t.number: t for t in search.study.trials}
    for trial in search.study.trials:
        assert trial.user_attrs["seed"] == 0
        if "duplicate_of" not in trial.user_attrs:
            continue
        original = by_number[trial.user_attrs["duplicate_of"]]
        assert keys([trial]) == keys([original])
        assert trial.values == original.values  # the sampler is told the reused result
        assert trial.user_attrs["params"] == original.user_attrs["params"]
        assert not ledger.counted(trial)


def test_a_target_beyond_the_space_stops_when_it_is_exhausted_and_says_so(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=12)
    search.drive()
    assert len(search.trained()) == 8 and len(set(keys(search.trained()))) == 8
    assert any("all 8 configurations of the space are tried" in m for m in search.messages)
    # Continuing the study trains nothing more.
    search.searcher = search.new_searcher()
    assert search.searcher.suggest("again") == Searcher.FINISHED
    assert len(search.study.trials) == len(search.study.get_trials(deepcopy=False))


def test_a_proposal_equal_to_a_running_trial_is_not_trained(tmp_path: Path, splits: Splits) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=8)
    first = search.suggest("a")  # the baseline, now running
    params = {k: v for k, v in first.items() if k not in (TRIAL_KEY, SEED_KEY)}
    search.study.enqueue_trial(params)  # the sampler proposes it again
    second = search.suggest("b")
    running_dup = search.study.trials[1]
    assert running_dup.state == TrialState.FAIL
    assert running_dup.user_attrs["failure"] == ledger.DUPLICATE
    assert running_dup.user_attrs["duplicate_of"] == first[TRIAL_KEY]
    assert second[TRIAL_KEY] == 2 and keys([search.study.trials[2]]) != keys([running_dup])
    search.train("a", first)
    search.train("b", second)
    assert ledger.progress(search.study) == (2, 0)


def test_another_seed_is_another_configuration(tmp_path: Path, splits: Splits) -> None:
    """A designed study's seed travels to the trainer, and the same parameters at another
    seed are trained, not reused."""
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=3)
    search.train("a", search.suggest("a"))
    params = search.study.trials[0].params
    search.study.enqueue_trial(params, user_attrs={"seed": 7})
    proposal = search.suggest("b")
    assert proposal[SEED_KEY] == 7 and search.study.trials[1].state == TrialState.RUNNING
    search.train("b", proposal)
    seeded = search.study.trials[1]
    assert seeded.user_attrs["seed"] == 7 and "duplicate_of" not in seeded.user_attrs
    assert seeded.values != search.study.trials[0].values  # another initialisation


def test_a_configuration_that_cannot_be_built_fails_its_trial_not_the_search(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, space_file(tmp_path, UNBUILDABLE), splits, trials=2)
    search.drive()
    off, on = search.study.trials
    assert off.state == TrialState.COMPLETE and not off.params["blurpool.enabled"]
    assert on.state == TrialState.FAIL and on.params["blurpool.enabled"]
    assert on.user_attrs["failure"] == ledger.ERROR
    assert "Padding size" in on.user_attrs["reason"]
    assert ledger.progress(search.study) == (2, 0)  # a build error is a counted failure


@pytest.mark.parametrize("policy", ["scale", "reject"])
def test_a_search_nothing_fits_stops_saying_what_fits_the_policy(
    policy: str, tmp_path: Path, splits: Splits
) -> None:
    """Every proposal over a budget of 10 (the narrowest net has more): the search stops after
    its proposals in a row, and suggests the scale policy only where it is not in force."""
    text = THREE_SWITCHES.replace(
        "search: {", f"budget: {{params: 10, policy: {policy}}}\nsearch: {{"
    ).replace("se: {enabled: search, ratio: 0.25}", "se: search")  # a range: never exhausted
    search = Search(tmp_path, space_file(tmp_path, text, "random"), splits, trials=2)
    assert search.searcher.suggest("a") == Searcher.FINISHED
    (stop,) = [m for m in search.messages if "proposals in a row" in m]
    assert "raise budget.params" in stop
    assert ("use budget.policy: scale" in stop) == (policy == "reject")


def test_interrupted_trials_are_queued_again_baseline_first(tmp_path: Path, splits: Splits) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=4)
    baseline = search.suggest("a")
    other = search.suggest("b")
    assert search.searcher.interrupted() == 2  # Ctrl-C while both ran
    assert ledger.requeue_interrupted(search.study) == 2
    assert ledger.requeue_interrupted(search.study) == 0  # each is queued once
    waiting = search.study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["rerun_of"] for t in waiting] == [baseline[TRIAL_KEY], other[TRIAL_KEY]]
    assert waiting[0].user_attrs["baseline"] is True and waiting[0].user_attrs["seed"] == 0

    search.searcher = search.new_searcher()
    search.drive()
    trials = search.study.trials
    rerun = trials[2]
    assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["baseline"] is True
    assert rerun.params == trials[0].params and trials[3].params == trials[1].params
    assert len(search.trained()) == 4 and len(set(keys(search.trained()))) == 4
    rows = {r["number"]: r for r in export.rows(search.study, search.config, only_pareto=False)}
    assert rows[2]["rerun_of"] == 0 and rows[3]["rerun_of"] == 1
    assert rows[0]["failure"] == ledger.INTERRUPTED


def test_a_dead_drivers_trial_is_trained_again_before_anything_new(
    tmp_path: Path, splits: Splits
) -> None:
    """Another driver's trial whose heartbeat stopped is taken over by the next `suggest`,
    not only by the heartbeat thread later: the study reaches its target with that
    configuration re-run, never with a new proposal in its place and the re-run left queued."""
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=2)
    dead = search.suggest("elsewhere")
    search.searcher.live.clear()  # it belonged to another driver, which then died
    trial_id = search.study.trials[dead[TRIAL_KEY]]._trial_id
    search.study._storage.set_trial_user_attr(trial_id, ledger.HEARTBEAT, time.time() - 10_000)
    rerun = search.suggest("here")
    assert rerun[TRIAL_KEY] == 1 and search.study.trials[1].user_attrs["rerun_of"] == 0
    assert search.study.trials[0].user_attrs["failure"] == ledger.INTERRUPTED
    assert {k: rerun[k] for k in dead if k != TRIAL_KEY} == {
        k: v for k, v in dead.items() if k != TRIAL_KEY
    }
    search.train("here", rerun)
    search.drive()
    assert len(search.trained()) == 2
    assert not search.study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))


def test_every_row_has_every_measurement_and_the_study_names_its_objectives(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=8)
    search.drive()
    assert search.study.metric_names == ["accuracy", "latency_ms"]
    rows = export.rows(search.study, search.config, only_pareto=False)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) >= 8
    for row in complete:
        assert isinstance(row["params"], int) and row["params"] > 0  # not an objective here
        assert row["flops"] > 0 and row["latency_ms"] > 0 and 0 <= row["accuracy"] <= 1
        assert row["device"] == "cpu" and row["threads"] == 1 and row["seed"] == 0
    duplicates = [r for r in rows if r["duplicate_of"] is not None]
    assert all(r["number"] not in export.pareto_numbers(search.study) for r in duplicates)


def test_queued_trials_train_even_when_the_space_is_exhausted_at_the_study_seed(
    tmp_path: Path, splits: Splits
) -> None:
    """Another seed is another configuration: trials queued at another seed (a designed
    study's paired seeds) are trained although every configuration at the study's seed is."""
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=8)
    search.drive()
    for params in finite_configurations(search.config.space()):
        search.study.enqueue_trial(params, user_attrs={"seed": 1})
    search.config = replace(search.config, trials=20)
    search.searcher = search.new_searcher()
    search.drive()
    trained = search.trained()
    assert len(trained) == 16 and len(set(keys(trained))) == 16
    assert sorted(t.user_attrs["seed"] for t in trained) == [0] * 8 + [1] * 8
    assert any("all 8 configurations of the space are tried" in m for m in search.messages)


def test_with_k_seeds_every_configuration_trains_each_seed_once_side_by_side(
    tmp_path: Path, splits: Splits
) -> None:
    """`--seeds 3`: the sampler proposes at the study's seed and the other two seeds of that
    configuration are queued at once, before it proposes again; a proposal of a trained
    configuration is a duplicate of its first seed, not a fourth seed."""
    search = Search(
        tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=9, search_seeds=3
    )
    search.drive()
    trained = search.trained()
    assert len(trained) == 9 and len(set(keys(trained))) == 9
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trained:
        groups.setdefault(ledger.configuration(t), []).append(t)
    assert len(groups) == 3
    for group in groups.values():
        assert [t.user_attrs["seed"] for t in group] == [0, 1, 2]
        assert [t.number for t in group] == list(range(group[0].number, group[0].number + 3))
        assert len({t.user_attrs["final_loss"] for t in group}) == 3  # three initialisations
    assert groups[ledger.configuration(search.study.trials[0])][1].user_attrs["baseline"]
    for trial in search.study.trials:
        if "duplicate_of" in trial.user_attrs:
            assert trial.user_attrs["seed"] == 0


def test_a_configurations_seeds_train_as_one_fused_group(tmp_path: Path, splits: Splits) -> None:
    """`--seeds 3 --fuse 3`: the seeds a proposal lacks are queued before its group is
    formed, so the group is the configuration's three seeds."""
    space = space_file(tmp_path, THREE_SWITCHES)
    search = Search(tmp_path, space, splits, trials=6, members=3, search_seeds=3)
    members = search.searcher.suggest("g")[MEMBERS_KEY]
    assert [m[SEED_KEY] for m in members] == [0, 1, 2]
    params = [{k: v for k, v in m.items() if k not in (TRIAL_KEY, SEED_KEY)} for m in members]
    assert params[0] == params[1] == params[2]
    search.train_group("g", members)
    search.drive()
    trained = search.trained()
    assert len(trained) == 6 and len({t.user_attrs[ledger.GROUP] for t in trained}) == 2


def test_an_interrupted_seed_is_trained_again_and_no_seed_twice(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(
        tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, trials=4, search_seeds=2
    )
    first = search.suggest("a")  # the baseline at seed 0
    second = search.suggest("b")  # its seed 1, queued before anything new
    assert (first[SEED_KEY], second[SEED_KEY]) == (0, 1)
    search.train("a", first)
    assert search.searcher.interrupted() == 1  # Ctrl-C while seed 1 trained
    assert ledger.requeue_interrupted(search.study) == 1
    search.searcher = search.new_searcher()
    search.drive()
    trained = search.trained()
    assert len(trained) == 4 and len(set(keys(trained))) == 4
    assert sorted(t.user_attrs["seed"] for t in trained) == [0, 0, 1, 1]
    assert search.study.trials[2].user_attrs["rerun_of"] == 1


# -- fused groups (`--fuse`) ---------------------------------------------------------------


def groups(study: optuna.Study) -> dict[int, list[int]]:
    """The study's fused groups: each one's name (its lowest trial number) -> its members."""
    found: dict[int, list[int]] = {}
    for trial in study.trials:
        if ledger.GROUP in trial.user_attrs:
            found.setdefault(trial.user_attrs[ledger.GROUP], []).append(trial.number)
    return found


# What a trial measures afresh in any run (time, and float32 sums added in another order by
# fused kernels), and what marks a fused one: not part of what a trial IS.
RUN_TO_RUN = {
    export.STARTED,
    export.FINISHED,
    "accuracy",
    "final_loss",
    "latency_ms",
    "latency_iqr_ms",
    "train_seconds",
    "images_per_second",
    "pareto",  # both fronts follow the latencies timed in this run, and their spread
    "front",
    "group",
}


def test_queued_trials_of_one_network_train_as_groups_and_export_as_trials_alone(
    tmp_path: Path, splits: Splits
) -> None:
    """`--fuse 3` on an oat design at 3 seeds (baseline, +gap, +se, +label_smoothing; gap
    and se change the network): each group holds queued trials of one group key in queue
    order, whole seeds first, at most 3. Every member is its own trial, with its own seed,
    and the export holds the rows the same design trained unfused holds, plus `group`."""
    space = space_file(tmp_path, THREE_SWITCHES)
    fused = Search(tmp_path / "fused", space, splits, trials=12, seeds=3, members=3)
    fused.drive()
    alone = Search(tmp_path / "alone", space, splits, trials=12, seeds=3)
    alone.drive()
    assert groups(fused.study) == {0: [0, 3, 4], 1: [1, 5, 9], 2: [2, 6, 10], 7: [7, 8, 11]}
    assert not groups(alone.study)
    assert any("trials 0, 3, 4: one group" in m for m in fused.messages)
    for search in (fused, alone):
        assert len(search.trained()) == 12 and len(set(keys(search.trained()))) == 12
    fused_rows, alone_rows = (
        export.rows(s.study, s.config, only_pareto=False) for s in (fused, alone)
    )
    for got, want in zip(fused_rows, alone_rows, strict=True):
        assert list(got) == list(want)
        assert {k: v for k, v in got.items() if k not in RUN_TO_RUN} == {
            k: v for k, v in want.items() if k not in RUN_TO_RUN
        }
        assert got["group"] == fused.study.trials[got["number"]].user_attrs[ledger.GROUP]
        assert want["group"] is None
        assert abs(got["accuracy"] - want["accuracy"]) < 0.05


def test_a_member_that_diverges_fails_alone_and_its_group_trains_on(
    tmp_path: Path, splits: Splits
) -> None:
    search = Search(tmp_path, space_file(tmp_path, THREE_SWITCHES), splits, 12, seeds=3, members=3)
    members = search.searcher.suggest("g")[MEMBERS_KEY]
    assert [m[TRIAL_KEY] for m in members] == [0, 3, 4]
    planted = []

    def plant_nan(module: torch.nn.Module, args: object) -> None:
        """NaN weights in member 1's stem, at the group's first training step."""
        if isinstance(module, FusedConv2d) and module.training and not planted:
            with torch.no_grad():
                module.convs[1].weight.fill_(float("nan"))
            planted.append(module)

    handle = register_module_forward_pre_hook(plant_nan)
    try:
        search.train_group("g", members)
    finally:
        handle.remove()
    first, diverged, third = (search.study.trials[n] for n in (0, 3, 4))
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs["failure"] == ledger.DIVERGED
    assert "epoch 1" in diverged.user_attrs["reason"]
    assert first.state == third.state == TrialState.COMPLETE
    assert ledger.progress(search.study) == (3, 0)  # a diverged trial counts, as alone


def test_a_group_interrupted_after_an_epoch_resumes_every_member_from_it(
    tmp_path: Path, splits: Splits
) -> None:
    """The driver dies at the group's first epoch report, when every member's checkpoint of
    that epoch is written: each member is recorded interrupted and queued again, and its
    re-run trains on from that epoch."""
    space = space_file(tmp_path, THREE_SWITCHES.replace("epochs: 1", "epochs: 2"))
    search = Search(tmp_path, space, splits, trials=12, seeds=3, members=3)
    members = search.searcher.suggest("g")[MEMBERS_KEY]

    def killed(member: int, epoch: int, accuracy: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_trials(members, search.config, splits, "s", "cpu", 1, killed)
    assert search.searcher.interrupted() == 3
    assert ledger.requeue_interrupted(search.study) == 3
    search.searcher = search.new_searcher()
    search.drive()
    reruns = {
        t.user_attrs["rerun_of"]: t for t in search.study.trials if "rerun_of" in t.user_attrs
    }
    assert sorted(reruns) == [0, 3, 4]
    for rerun in reruns.values():
        assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["resumed_from_epoch"] == 1
    assert len({t.user_attrs[ledger.GROUP] for t in reruns.values()}) == 1  # one group again
    assert len(search.trained()) == 12 and len(set(keys(search.trained()))) == 12
