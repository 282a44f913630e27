"""Runs a study's trials in parallel with Ray Tune. The only module that imports Ray.

Optuna decides what to try and keeps the record; Ray Tune decides where and when each
trial runs. `StudySearcher` is the bridge: Tune asks it for configurations, it asks the
Optuna study, and it tells the study every outcome as soon as Tune reports it.

One Ray Tune trial trains a fused group (`trainer.train.train_group`): the Optuna trial the
searcher asked for and, with `--fuse` (`search.execution`), up to K - 1 queued trials that
may share its network (`trainer.group.RULE`), in one Ray task with the group's resources.
Each member stays its own Optuna trial: its own row, heartbeat, duplicate check, per-epoch
report and checkpoint, outcome and failure reason, and re-run after an interruption. A group
of one is a trial trained alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import ray
import torch
from optuna.trial import FrozenTrial, TrialState
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from search import (
    drivers,
    failpoints,
    grouping,
    halving,
    heartbeat,
    ledger,
    progress,
    reaper,
    seeds,
    weights,
)
from search.errors import UsageError
from search.execution import Execution
from search.study import StudyConfig
from search.worker import MEMBERS_KEY, SEED_KEY, TRIAL_KEY, train_trials
from spaces import Space
from spaces.listing import finite_configurations
from trainer.budget import BudgetError, resolve_arch
from trainer.data import Splits
from trainer.group import group_key
from trainer.spec import ArchSpec, TrialSpec

if TYPE_CHECKING:
    from search.display import Board

# Ray Tune's config of a trial (here `ray_params`) is its members (`search.worker`); it
# reports each member's epochs, then their outcomes.
EPOCH_KEY = "epoch"  # in a per-epoch report of member TRIAL_KEY, beside "epoch_accuracy"
OUTCOMES_KEY = "outcomes"  # in the final report: each member's outcome, with its TRIAL_KEY
# Proposals in a row that train nothing (over budget, duplicates) before the search stops.
MAX_PROPOSALS = 200
# Duplicates in a row before the searcher proposes an untried configuration itself: some
# samplers keep proposing the point they believe best once they have it.
TAKE_OVER_AFTER = 3
SHARED_MARK = ".written-by-driver"  # in the weights directory: proves a node shares it
IDLE_POLL = 1.0  # seconds between looks at the study while this driver waits on others
_TAKING_OVER = threading.Lock()  # module-level: Ray Tune pickles the searcher, not a lock


def run_trial(
    ray_params: dict[str, Any], *, settings: StudyConfig, splits: Splits, study_name: str
) -> None:
    """One Ray Tune trial, a fused group, in a Ray worker with the resources Ray gave it."""
    members = ray_params[MEMBERS_KEY]
    resources = tune.get_context().get_trial_resources().required_resources
    threads = max(1, int(resources.get("CPU", 1)))
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    where = {
        ledger.NODE: ray.get_runtime_context().get_node_id(),
        ledger.NODE_IP: ray.util.get_node_ip_address(),
    }
    shared = Path(settings.weights_dir) / study_name
    if not (shared / SHARED_MARK).is_file():  # checked before hours of training
        reason = (
            f"the weights directory {shared} is not shared with node {where[ledger.NODE_IP]}: "
            "on a cluster it must be one directory every node mounts at the same path"
        )
        failed = {ledger.FAILURE: ledger.ERROR, ledger.REASON: reason}
        tune.report({OUTCOMES_KEY: [{TRIAL_KEY: m[TRIAL_KEY], **failed} for m in members], **where})
        return

    def report_epoch(member: int, epoch: int, accuracy: float) -> None:  # halving, progress
        # A function trainable's report returns once the driver has taken it in and judged it.
        number = members[member][TRIAL_KEY]
        tune.report({EPOCH_KEY: epoch, ledger.EPOCH_ACCURACY: accuracy, TRIAL_KEY: number})

    outcomes = train_trials(members, settings, splits, study_name, device, threads, report_epoch)
    tune.report({OUTCOMES_KEY: outcomes, **where})


class LastSlotTaken(Exception):
    """Another driver asked for the study's last trial at the same moment, and won."""


class StudySearcher(Searcher):
    """A Ray Tune searcher that proposes from, and records into, an Optuna study.

    Each configuration (parameters and seed) is trained once per study; with `--seeds K`,
    the seeds a configuration lacks are queued as soon as a trial of it is accepted
    (`search.seeds.top_up`), before its group is formed. A proposal equal to a finished
    trial is not trained: it is told that trial's outcome, so the sampler learns it, and
    marked `duplicate_of`. A proposal equal to a running trial is told FAIL (`duplicate`):
    its outcome is not known yet, and the sampler learns it from the running trial when that
    finishes. Duplicates never count towards the target. A finite space whose every
    configuration is tried ends the search, which says so.

    With `members` > 1, a trial asked for is joined by queued trials of its group key
    (`trainer.group.group_key`), in queue order, each one checked as the first was, into one
    fused group of at most `members`: one Ray Tune trial, whose id maps to its live members.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        settings: StudyConfig,
        in_shape: tuple[int, int, int],
        num_classes: int,
        board: Board,
        members: int = 1,
    ):
        super().__init__()  # no Tune metric: failed trials report none, the study judges
        self.study, self.space, self.settings = study, space, settings
        self.in_shape, self.num_classes = in_shape, num_classes
        self.board = board  # shown every event
        self.members = members  # trials per fused group, at most
        self.live: dict[str, dict[int, optuna.Trial]] = {}  # Tune trial id -> its live members
        self.queue = grouping.Queue(space, settings.seed, in_shape, num_classes)
        self.driver = drivers.driver_id()
        self.configurations = finite_configurations(space)  # None: too many to list
        self.fallback = optuna.samplers.RandomSampler(seed=settings.seed)
        self.repeats = 0  # duplicate proposals in a row
        self.stopped = False
        self.idle_until = 0.0  # monotonic time before which `suggest` need not look again

    def __getstate__(self) -> dict[str, Any]:
        """Ray Tune pickles the searcher into its experiment folder; the board (a lock, a
        terminal) stays out. A study is continued from its storage, never from there."""
        return {**self.__dict__, "board": None}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if time.monotonic() < self.idle_until:
            return None
        for _ in range(MAX_PROPOSALS):
            if self.stopped:
                break
            trials = self.study.get_trials(deepcopy=False)
            done = ledger.done(trials)
            now, grace = time.time(), self.settings.grace_period
            # Without a recent heartbeat a trial is not running: its driver died.
            running = sum(ledger.is_live(t, grace, now) for t in trials)
            if any(
                t.state == TrialState.RUNNING and not ledger.is_live(t, grace, now) for t in trials
            ):  # a dead driver's trials: queue them again before the sampler's next proposal
                self.take_over()
                continue
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if done + running >= self.settings.trials or (self.settings.design and not waiting):
                # A designed study trains its queued trials, nothing the sampler proposes.
                if running and done < self.settings.trials:
                    # Trials still run, here or under other drivers; if one of those dies,
                    # its trials come back (`fail_orphans`) and this driver takes them over.
                    return self._idle()
                break
            known = ledger.known_configurations(trials, self.settings.seed)
            untried = None if waiting else self._untried(trials, known)  # queued trials first
            if untried == []:
                self._stop(
                    f"all {len(self.configurations)} configurations of the space are tried; "
                    f"the search stops at {done + running} of {self.settings.trials} trials"
                )
                break
            try:
                proposal = self._propose(trial_id, known, untried)
            except LastSlotTaken:
                return self._idle()
            if proposal is not None:
                return proposal
        else:
            scale = "" if self.space.budget_policy == "scale" else ", use budget.policy: scale"
            self._stop(
                f"{MAX_PROPOSALS} proposals in a row could not be trained (over the parameter "
                f"budget, or trained already); raise budget.params{scale}, or widen the space"
            )
        return Searcher.FINISHED if not self.live else None

    def take_over(self) -> None:
        """Trials of a driver that stopped beating: interrupted, and queued to train again.
        Called from `suggest` too, so a re-run is queued before anything new is asked for
        and the study's target is reached with it, not without it."""
        with _TAKING_OVER:  # the heartbeat thread and `suggest` both call this
            orphans = ledger.fail_orphans(self.study, self.settings.grace_period)
            requeued = ledger.requeue_interrupted(self.study) if orphans else 0
        if orphans:
            self.board.note(
                f"{orphans} trial(s) of a dead driver interrupted, {requeued} queued again"
            )

    def _untried(
        self, trials: list[FrozenTrial], known: dict[str, FrozenTrial]
    ) -> list[dict[str, Any]] | None:
        """The configurations of a finite space not trained, failed, running or over the
        budget yet, at the study's seed; None for a space too large to list."""
        if self.configurations is None:
            return None
        seed = self.settings.seed
        over = (t for t in trials if t.user_attrs.get(ledger.FAILURE) == ledger.OVER_BUDGET)
        tried = set(known) | {ledger.config_key(t.params, ledger.seed_of(t, seed)) for t in over}
        return [p for p in self.configurations if ledger.config_key(p, seed) not in tried]

    def _ask(self, untried: list[dict[str, Any]] | None) -> optuna.Trial:
        """The sampler's next trial; after `TAKE_OVER_AFTER` duplicates in a row, an untried
        configuration of a finite space, or a random draw from an infinite one."""
        if self.repeats < TAKE_OVER_AFTER:
            return self.study.ask()
        if untried:
            self.study.enqueue_trial(untried[0], user_attrs={ledger.SEED: self.settings.seed})
            return self.study.ask()
        sampler, self.study.sampler = self.study.sampler, self.fallback
        try:
            return self.study.ask()
        finally:
            self.study.sampler = sampler

    def _propose(
        self, trial_id: str, known: dict[str, FrozenTrial], untried: list[dict[str, Any]] | None
    ) -> dict[str, Any] | None:
        """One proposal: the group to train, or None when its first trial was recorded
        untrained (a duplicate, over the budget, or impossible to build)."""
        trial = self._ask(untried)
        admitted = self._admit(trial, known)
        if admitted is None:
            return None
        seeds.top_up(self.study, self.settings)  # `--seeds K`: its other seeds, to group
        group = [(trial, admitted[0]), *self._partners(trial, *admitted, known)]
        self.live[trial_id] = {t.number: t for t, _ in group}
        if len(group) > 1:
            for t, _ in group:
                t.set_user_attr(ledger.GROUP, min(t.number for t, _ in group))
            self.board.note(f"trials {', '.join(str(t.number) for t, _ in group)}: one group")
        for t, spec in group:
            self.board.started(t, spec.train.epochs)
        return {
            MEMBERS_KEY: [
                {**t.params, TRIAL_KEY: t.number, SEED_KEY: spec.seed} for t, spec in group
            ]
        }

    def _admit(
        self, trial: optuna.Trial, known: dict[str, FrozenTrial]
    ) -> tuple[TrialSpec, ArchSpec] | None:
        """Claim a trial just asked for and check it: its spec and resolved architecture, or
        None when it was recorded untrained. Raises LastSlotTaken, giving it back, when it
        would take the study past its target."""
        grace = self.settings.grace_period
        if ledger.over_target(self.study, trial.number, self.settings.trials, grace):
            ledger.give_back(self.study, trial.number)
            raise LastSlotTaken
        seed = ledger.claim(trial, self.driver, self.settings.seed)
        try:
            spec = self.space.suggest(trial, seed=seed)
        except Exception as err:  # a space that cannot describe this trial
            self._reject(trial.number, ledger.ERROR, f"cannot build this configuration: {err!r}")
            return None
        original = known.get(ledger.config_key(trial.params, seed))
        if original is not None:
            self._duplicate(trial, original)
            return None
        self.repeats = 0
        try:
            fit = resolve_arch(spec, self.in_shape, self.num_classes)
        except BudgetError as err:  # never trained: recorded, and not counted
            self._reject(trial.number, ledger.OVER_BUDGET, str(err))
            return None
        except Exception as err:  # e.g. a layer that does not fit its feature map
            self._reject(trial.number, ledger.ERROR, f"cannot build this configuration: {err!r}")
            return None
        trial.set_user_attr(ledger.PLANNED_PARAMS, fit.params)
        return spec, fit.arch

    def _partners(
        self, first: optuna.Trial, spec: TrialSpec, arch: ArchSpec, known: dict[str, FrozenTrial]
    ) -> list[tuple[optuna.Trial, TrialSpec]]:
        """Up to `members` - 1 queued trials of `first`'s group key, asked for and admitted
        as `first` was, in queue order; one another driver takes first is skipped."""
        partners: list[tuple[optuna.Trial, TrialSpec]] = []
        if self.members == 1:
            return partners
        taken = {*known, ledger.config_key(first.params, spec.seed)}
        for queued in self.queue.partners(self.study, group_key(spec, arch), taken):
            trial = ledger.take_queued(self.study, queued)
            if trial is None:
                continue
            try:
                admitted = self._admit(trial, known)
            except LastSlotTaken:  # the study's target is reached with the group as it is
                break
            if admitted is not None:
                partners.append((trial, admitted[0]))
                if len(partners) == self.members - 1:
                    break
        return partners

    def _reject(self, number: int, failure: str, reason: str) -> None:
        ledger.fail(self.study, number, failure, reason)
        self.board.note(f"trial {number} not trained ({failure}): {reason}")

    def _duplicate(self, trial: optuna.Trial, original: FrozenTrial) -> None:
        """Record `trial` as the configuration `original` trained, with its outcome."""
        self.repeats += 1
        trial.set_user_attr(ledger.DUPLICATE_OF, original.number)
        same = f"the same configuration and seed as trial {original.number}"
        if original.state == TrialState.COMPLETE:
            for key in ledger.RESULT_ATTRS:
                if key in original.user_attrs:
                    trial.set_user_attr(key, original.user_attrs[key])
            self.study.tell(trial, original.values)
            self.board.note(f"trial {trial.number} is {same}: its result is reused")
        elif original.state == TrialState.PRUNED:  # halving stopped it: the same, untrained
            for key in (ledger.PRUNED_EPOCH, ledger.PARTIAL_ACCURACY):
                trial.set_user_attr(key, original.user_attrs[key])
            for key, value in original.constraints.items():
                trial.set_constraint(key, value)
            self.study.tell(trial, state=TrialState.PRUNED)
            self.board.note(f"trial {trial.number} is {same}, which was pruned")
        elif original.state == TrialState.FAIL:
            reason = original.user_attrs.get(ledger.REASON, "")
            self._reject(trial.number, ledger.DUPLICATE, f"{same}, which failed: {reason}")
        else:
            self._reject(trial.number, ledger.DUPLICATE, f"{same}, which is running")

    def _idle(self) -> None:
        """Nothing to start now: look again in `IDLE_POLL` seconds, not at every Tune step."""
        self.idle_until = time.monotonic() + IDLE_POLL

    def _stop(self, message: str) -> None:
        if not self.stopped:
            self.stopped = True
            self.board.note(message)

    def on_epoch(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Record a member's per-epoch report and show it; returns whether the Ray Tune trial
        stops there: when successive halving stopped its last live member (it is then
        recorded PRUNED). A member stopped while others train on leaves the group."""
        group = self.live.get(trial_id)
        if group is None:
            return False
        number = result[TRIAL_KEY]
        trial = group.get(number)
        if trial is None:  # stopped once already (its worker was restarted): stop it again
            return self._leave(trial_id, number)
        epoch, accuracy = result[EPOCH_KEY], result[ledger.EPOCH_ACCURACY]
        failpoints.reached("epoch")  # mid-trial, its epoch's checkpoint written
        epochs = self.space.replay(trial.params).train.epochs  # the recipe may search it
        try:
            pruned = halving.report(self.study, trial, self.space.pruner, epochs, epoch, accuracy)
        except optuna.exceptions.UpdateFinishedTrialError:  # another driver judged it dead
            self.board.ended(number, "already recorded as interrupted: stopped")
            return self._leave(trial_id, number)
        self.board.epoch(number, epoch, accuracy, result["time_total_s"])
        if not pruned:
            return False
        self._drop_checkpoint(trial)
        recorded = self.study.trials[number]
        self.board.ended(number, progress.outcome(recorded, self.space.objectives))
        return self._leave(trial_id, number)

    def _leave(self, trial_id: str, number: int) -> bool:
        """Member `number` trains no further: the group's last stops with its Ray Tune
        trial (returns True); any other is marked for its worker (`weights.stop_mark`),
        which drops it from the group when its report returns."""
        group = self.live[trial_id]
        group.pop(number, None)
        if not group:
            del self.live[trial_id]
            return True
        mark = weights.stop_mark(self.settings, self.study.study_name, number)
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
        return False

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        group = self.live.pop(trial_id, {})  # empty: pruned already, or not ours
        outcomes = {o[TRIAL_KEY]: o for o in (result or {}).get(OUTCOMES_KEY, [])}
        where = {k: result[k] for k in ledger.WHERE_ATTRS if result and k in result}
        for number, trial in group.items():
            outcome = outcomes.get(number)
            try:
                self._record(trial, outcome and {**outcome, **where}, error)
            except optuna.exceptions.UpdateFinishedTrialError:  # another driver judged it dead
                self.board.ended(number, "already recorded as interrupted: result dropped")
                continue
            recorded = self.study.trials[number]
            if recorded.user_attrs.get(ledger.FAILURE) != ledger.INTERRUPTED:
                self._drop_checkpoint(trial)
            self.board.ended(number, progress.outcome(recorded, self.space.objectives))

    def _drop_checkpoint(self, trial: optuna.Trial) -> None:
        """A trial's outcome is recorded: its checkpoint will never be resumed. An
        interrupted trial keeps it, for its re-run to continue from."""
        seed = trial.user_attrs[ledger.SEED]
        checkpoint = weights.checkpoint_path(
            self.settings, self.study.study_name, trial.params, seed
        )
        checkpoint.unlink(missing_ok=True)

    def _record(self, trial: optuna.Trial, result: dict[str, Any] | None, error: bool) -> None:
        for key in ledger.WHERE_ATTRS:
            if result and key in result:
                trial.set_user_attr(key, result[key])
        if error:  # Tune already started it once more: a worker or node died twice
            ledger.fail(
                self.study, trial.number, ledger.ERROR, "its Ray worker or node died, twice"
            )
        elif result is None or ledger.FAILURE not in result:
            ledger.fail(self.study, trial.number, ledger.INTERRUPTED, "stopped before it finished")
        elif result[ledger.FAILURE]:
            ledger.fail(self.study, trial.number, result[ledger.FAILURE], result[ledger.REASON])
        else:
            for key in ledger.RESULT_ATTRS:
                trial.set_user_attr(key, result[key])
            self.study.tell(trial, [result[o] for o in self.space.objectives])
            failpoints.reached("told")

    def live_ids(self) -> list[int]:
        """Storage ids of the trials this driver runs now, for the heartbeat thread."""
        return [t._trial_id for group in list(self.live.values()) for t in list(group.values())]

    def interrupted(self) -> int:
        """Record every trial still running as interrupted; returns how many."""
        trials = [t for group in self.live.values() for t in group.values()]
        for trial in trials:
            ledger.fail(self.study, trial.number, ledger.INTERRUPTED, "stopped before it finished")
        self.live = {}
        return len(trials)


class EpochScheduler(FIFOScheduler):
    """Hands each per-epoch report to the searcher, which records it in the study and
    applies successive halving; stops the trials it prunes. Trials run first come, first
    served, as without a scheduler."""

    def __init__(self, searcher: StudySearcher):
        super().__init__()
        self.searcher = searcher

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if EPOCH_KEY in result and self.searcher.on_epoch(trial.trial_id, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast: Ray itself retries an unreachable head for minutes before giving up."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start Ray on this machine with all its cores,
    listening on loopback only (see `search.session.LOOPBACK_ENV`)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray starts workers 15 nice levels below its driver: on a shared machine the trials,
    # which are the work, then get a sliver of the CPU. Here they run at the driver's level
    # (`nice search ...` lowers both).
    os.environ.setdefault("RAY_worker_niceness", "0")
    if ray.is_initialized():
        return
    local = {"_node_ip_address": "127.0.0.1"} if address is None else {}
    if address is None:
        reaper.guard()  # the Ray started here ends with this process, however it ends
    try:
        if address not in (None, "auto", "local"):
            _check_reachable(address.removeprefix("ray://"))
        on_term = signal.getsignal(signal.SIGTERM)
        ray.init(
            # Ray's own default (None) joins the last `ray start` cluster of this machine: a
            # user's unrelated cluster, or one that is not on loopback and so refuses us.
            address=address or "local",
            **local,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
        )
        # Ray's own SIGTERM handler exits at once, leaving the trials RUNNING in the study.
        if on_term is not None:  # None: a handler not set from Python, which Ray kept
            signal.signal(signal.SIGTERM, on_term)
        failpoints.reached("ray")
    except (OSError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if address is None:
            raise UsageError(f"cannot start Ray on this machine: {reason}") from None
        raise UsageError(
            f"cannot reach the Ray cluster at {address!r}: {reason}. Accepted: the address "
            "`ray start --head` printed (host:port), 'auto' for a cluster on this machine, "
            "or neither --address nor $RAY_ADDRESS to start Ray here"
        ) from None


def run_study(
    study: optuna.Study,
    space: Space,
    settings: StudyConfig,
    splits: Splits,
    *,
    execution: Execution,
    address: str | None,
    runs_dir: Path,
    board: Board,
) -> int:
    """Run trials as `execution` says until the study reaches its target, showing each event
    on `board`; returns how many were interrupted."""
    start_ray(address)
    mark = Path(settings.weights_dir) / study.study_name / SHARED_MARK
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(drivers.driver_id())
    searcher = StudySearcher(
        study, space, settings, splits.image_shape, splits.num_classes, board, execution.members
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, settings=settings, splits=splits, study_name=study.study_name
        ),
        {"cpu": execution.threads, "gpu": execution.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=EpochScheduler(searcher),
            num_samples=-1,
            max_concurrent_trials=execution.parallel,
        ),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((runs_dir / "ray").resolve()),
            verbose=0,
            # A trial whose worker or node dies is started once more, elsewhere if need be.
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    beat = heartbeat.Heartbeat(
        study._storage, settings.grace_period, searcher.live_ids, searcher.take_over
    )
    with beat, contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: record what was running
        tuner.fit()
    return searcher.interrupted()


def cluster_cpus() -> float:
    """The CPUs of the Ray cluster this process started or joined."""
    return ray.cluster_resources().get("CPU", 1)


def stop_ray() -> None:
    """Leave no Ray process behind: stops a Ray this process started, or disconnects from
    a cluster it joined (which keeps running)."""
    if ray.is_initialized():
        ray.shutdown()
