"""The trial ledger: the one module that reads and writes a study's trial bookkeeping.

Optuna keeps each trial's state, parameters and values; everything else this tool knows
about a trial lives in its user attributes, under the keys named here: why it failed, which
driver runs it and when that driver last beat, its training seed and identity (baseline,
re-run, duplicate, design label), what it measured, and how far successive halving let it
train. From them the ledger answers what the study has done: which trials count towards
the target, which run now, which are orphans of a dead driver, which configurations are
trained already, and which trials form the Pareto front.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import drivers

# Why a trial failed, in its FAILURE attribute (with the REASON in words). Only trials
# that trained (or could not be built) count towards the study's trial target, a pruned
# one too; interrupted ones are queued again, and a duplicate reuses another's outcome.
FAILURE, REASON = "failure", "reason"
ERROR, DIVERGED, OVER_BUDGET, INTERRUPTED = "error", "diverged", "over_budget", "interrupted"
DUPLICATE = "duplicate"
COUNTED_FAILURES = (ERROR, DIVERGED)
# An interrupted trial whose configuration was trained again since: no longer an open failure.
TRAINED_AGAIN = "interrupted, trained again"

# What a trial IS. SEED is its training seed (initialisation and data order); the
# validation split always uses the study's seed. CONFIG is a designed study's label of the
# configuration; BASELINE marks the reference every ablation compares against.
BASELINE, SEED, CONFIG = "baseline", "seed", "config"
# The user attributes a re-run of an interrupted trial copies from it.
CARRIED_ATTRS = (BASELINE, SEED, CONFIG)
RERUN_OF = "rerun_of"  # on a re-run: the number of the interrupted trial it trains again
DUPLICATE_OF = "duplicate_of"  # on a duplicate: the number of the trial that trained it

# A trial trained in a fused group with others (`--fuse`): the lowest trial number of the
# group. Absent for a trial trained alone.
GROUP = "group"

# Who runs a trial: its driver's `host:pid`, and the Unix time that driver last beat.
DRIVER, HEARTBEAT = "driver", "heartbeat"
DEFAULT_GRACE = 120.0  # seconds without a heartbeat after which a trial's driver is dead
PLANNED_PARAMS = "planned_params"  # parameter count of the architecture, before training

# What a finished trial measured, kept in its user attributes whether or not the space
# declares it an objective, so every exported row is complete.
CHANNELS, BUDGET, DEVICE, THREADS = "channels", "budget", "device", "threads"
RESUMED_FROM_EPOCH, BATCH_SIZE = "resumed_from_epoch", "batch_size"
RESULT_ATTRS = (
    "accuracy",
    BUDGET,
    "params",
    "flops",
    CHANNELS,  # the stem's and each stage's, as trained: after budget scaling
    "latency_ms",
    "latency_iqr_ms",
    "train_seconds",
    "images_per_second",
    "final_loss",
    DEVICE,
    THREADS,
    RESUMED_FROM_EPOCH,  # epochs an earlier, interrupted attempt had trained; 0: none
    BATCH_SIZE,  # as trained: the whole train split when it is smaller than the one asked
)
# The Ray node that ran a trial, recorded for failures too.
NODE, NODE_IP = "node", "node_ip"
WHERE_ATTRS = (NODE, NODE_IP)

# Successive halving: the validation accuracy after epochs 1, 2, ...; and, for a trial it
# stopped, the epoch it stopped at and the accuracy there.
EPOCH_ACCURACY = "epoch_accuracy"
PRUNED_EPOCH, PARTIAL_ACCURACY = "pruned_epoch", "partial_accuracy"


def counted(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards the target: it trained to the end, was stopped by
    successive halving, or failed training. A duplicate trained nothing, whatever outcome
    it reuses."""
    if DUPLICATE_OF in trial.user_attrs:
        return False
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and trial.user_attrs.get(FAILURE) in COUNTED_FAILURES
    )


def done(trials: Iterable[FrozenTrial]) -> int:
    """How many of `trials` count towards the target."""
    return sum(counted(t) for t in trials)


def failure_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """The failed trials by why (their FAILURE), for the report and `search status`. An
    interrupted trial whose configuration has since been trained again (its re-run, or a
    re-run of that, was counted) is `TRAINED_AGAIN`, apart from the failures still open."""
    trials = list(trials)
    rerun = {t.user_attrs[RERUN_OF]: t for t in trials if RERUN_OF in t.user_attrs}

    def trained_again(trial: FrozenTrial) -> bool:
        again = rerun.get(trial.number)
        while again is not None and not counted(again):
            again = rerun.get(again.number)
        return again is not None

    counts: Counter[str] = Counter()
    for trial in trials:
        if trial.state == TrialState.FAIL:
            why = trial.user_attrs.get(FAILURE) or "unknown"
            counts[TRAINED_AGAIN if why == INTERRUPTED and trained_again(trial) else why] += 1
    return dict(sorted(counts.items()))


def seed_of(trial: FrozenTrial, study_seed: int) -> int:
    """The trial's training seed; studies stored before trials carried one used the study's."""
    return trial.user_attrs.get(SEED, study_seed)


def config_key(params: dict[str, Any], seed: int) -> str:
    """What makes two trials the same configuration: equal parameters and equal seed. Such
    trials are trained once per study."""
    return json.dumps([sorted(params.items()), seed])


def configuration(trial: FrozenTrial) -> str:
    """What a trial trains, whatever its seed: a designed study's label, else its parameters
    (a queued trial's as queued). The seeds of one configuration share it; the front and the
    means over seeds group by it."""
    params = queued_params(trial) if trial.state == TrialState.WAITING else trial.params
    return trial.user_attrs.get(CONFIG) or json.dumps(sorted(params.items()))


def another_seed(trial: FrozenTrial, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, user attributes) to queue the configuration of `trial` at `seed`: its
    exact parameters and identity (`CARRIED_ATTRS`), another seed."""
    carried = {k: trial.user_attrs[k] for k in CARRIED_ATTRS if k in trial.user_attrs}
    return dict(trial.params), {**carried, SEED: seed}


def known_configurations(trials: Iterable[FrozenTrial], study_seed: int) -> dict[str, FrozenTrial]:
    """The trained, failed and running configurations of a study by key, each with the trial
    that trained (or trains) it. Interrupted trials are left out: they are trained again."""
    return {
        config_key(t.params, seed_of(t, study_seed)): t
        for t in trials
        if DUPLICATE_OF not in t.user_attrs and (counted(t) or t.state == TrialState.RUNNING)
    }


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto-optimal trials that trained; a duplicate stands for its original."""
    numbers = {t.user_attrs.get(DUPLICATE_OF, t.number) for t in study.best_trials}
    return [t for t in study.get_trials(deepcopy=False) if t.number in numbers]


def not_rerun(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The interrupted trials no re-run has been queued for yet."""
    rerun = {t.user_attrs.get(RERUN_OF) for t in trials}
    return [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and t.user_attrs.get(FAILURE) == INTERRUPTED
        and t.number not in rerun
    ]


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again the interrupted trials not re-run yet, with their exact parameters and
    identity (`CARRIED_ATTRS`, plus `RERUN_OF`), baseline first; returns how many.

    The study then trains what an uninterrupted run would have: no reference, and no
    configuration that happened to be running at a crash, is lost.
    """
    pending = sorted(
        not_rerun(study.get_trials(deepcopy=False)),
        key=lambda t: (not t.user_attrs.get(BASELINE, False), t.number),
    )
    for trial in pending:
        carried = {k: trial.user_attrs[k] for k in CARRIED_ATTRS if k in trial.user_attrs}
        study.enqueue_trial(trial.params, user_attrs={**carried, RERUN_OF: trial.number})
    return len(pending)


def last_beat(trial: FrozenTrial) -> float:
    """Unix time of the trial's last sign of life (its start, for trials never stamped)."""
    stamp = trial.user_attrs.get(HEARTBEAT)
    if stamp is not None:
        return float(stamp)
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def age(trial: FrozenTrial, now: float | None = None) -> float:
    """Seconds since the trial's last sign of life."""
    return (time.time() if now is None else now) - last_beat(trial)


def is_live(trial: FrozenTrial, grace: float, now: float | None = None) -> bool:
    """Whether the trial runs now: RUNNING, with a heartbeat in the last `grace` seconds.
    A running trial without one belongs to a driver that died or hung."""
    return trial.state == TrialState.RUNNING and age(trial, now) <= grace


def stamp(storage: optuna.storages.BaseStorage, trial_ids: Iterable[int]) -> None:
    """Record a heartbeat now for each trial; a trial that finished meanwhile is skipped."""
    now = time.time()
    for trial_id in trial_ids:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial_id, HEARTBEAT, now)


def claim(trial: optuna.Trial, driver: str, study_seed: int) -> int:
    """Mark a trial just asked for as run by `driver`, with a first heartbeat; returns its
    training seed (a queued trial may carry its own, else the study's)."""
    trial.set_user_attr(DRIVER, driver)
    stamp(trial.study._storage, [trial._trial_id])
    if SEED not in trial.user_attrs:
        trial.set_user_attr(SEED, study_seed)
    return trial.user_attrs[SEED]


def progress(study: optuna.Study, grace: float = DEFAULT_GRACE) -> tuple[int, int]:
    """(trials counted towards the target, trials running now anywhere). A running trial
    without a heartbeat for `grace` seconds is not running: its driver is dead or hung."""
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    return done(trials), sum(is_live(t, grace, now) for t in trials)


def over_target(study: optuna.Study, number: int, target: int, grace: float) -> bool:
    """Whether trial `number`, asked a moment ago, would take the study past its target.
    Two drivers that ask at once both see both trials (numbers are given out in order, under
    a lock), so both agree that the later number is the one too many."""
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    ahead = sum(t.number < number and is_live(t, grace, now) for t in trials)
    return done(trials) + ahead >= target


def give_back(study: optuna.Study, number: int) -> None:
    """Return a trial asked for but not started to the queue, for whichever driver asks next."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_state_values(trial_id, TrialState.WAITING)


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a queued (WAITING) trial will train: Optuna keeps them among its system
    attributes until the trial is asked for."""
    return trial.system_attrs.get("fixed_params", trial.params)


def take_queued(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial | None:
    """Ask for the queued trial `trial` itself, as `study.ask` asks for the first in the
    queue (its parameters are then the queued ones); None when another driver took it."""
    try:
        if not study._storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    return optuna.Trial(study, trial._trial_id)


def fail(study: optuna.Study, number: int, failure: str, reason: str) -> None:
    """Record trial `number` as FAIL, with why, so the export shows it. A trial another
    driver finished meanwhile keeps its record."""
    storage = study._storage  # Optuna exposes no public setter for another process's trial
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    try:
        storage.set_trial_user_attr(trial_id, FAILURE, failure)
        storage.set_trial_user_attr(trial_id, REASON, reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def fail_orphans(study: optuna.Study, grace: float = DEFAULT_GRACE) -> int:
    """Record as interrupted the running trials whose driver has died, so they are retried:
    at once for a driver on this machine whose process is gone, after `grace` seconds
    without a heartbeat for a driver anywhere. Trials of live drivers are left alone."""
    now = time.time()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = trial.user_attrs.get(DRIVER, "")
        if not drivers.alive(driver):
            orphans.append((trial, "its search process ended before it finished"))
        elif not is_live(trial, grace, now):
            silent = f"sent no heartbeat for {grace:.0f}s"
            orphans.append((trial, f"its search process on {drivers.host_of(driver)} {silent}"))
    for trial, reason in orphans:
        fail(study, trial.number, INTERRUPTED, reason)
    return len(orphans)
