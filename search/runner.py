"""Runs a study's trials in parallel with Ray Tune. The only module that imports Ray.

Optuna decides what to try and keeps the record; Ray Tune decides where and when each
trial runs. `StudySearcher` is the bridge: Tune asks it for configurations, it asks the
Optuna study, and it tells the study every outcome as soon as Tune reports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import ray
import torch
from optuna.trial import FrozenTrial, TrialState
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from search import drivers, failpoints, halving, heartbeat, ledger, progress, reaper, seeds, weights
from search.errors import UsageError
from search.execution import Execution
from search.study import StudyConfig
from spaces import Space
from spaces.listing import finite_configurations
from trainer.budget import BudgetError, resolve_arch
from trainer.data import Splits
from trainer.models.net import stage_channels
from trainer.train import Diverged, train

if TYPE_CHECKING:
    from search.display import Board

# Ray Tune's config of a trial (here `ray_params`) is its flat parameters and these two keys.
TRIAL_KEY = "optuna_trial"  # the Optuna trial number, beside the flat parameters
SEED_KEY = "optuna_seed"  # the trial's training seed
EPOCH_KEY = "epoch"  # in a per-epoch report, beside "epoch_accuracy"; absent from the final one
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
    """One trial, in a Ray worker, with the resources Ray gave it."""
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
        tune.report({ledger.FAILURE: ledger.ERROR, ledger.REASON: reason, **where})
        return

    def report_epoch(epoch: int, accuracy: float) -> None:  # for halving and progress
        tune.report({EPOCH_KEY: epoch, ledger.EPOCH_ACCURACY: accuracy})

    outcome = train_trial(ray_params, settings, splits, study_name, device, threads, report_epoch)
    tune.report({**outcome, **where})


def train_trial(
    ray_params: dict[str, Any],
    settings: StudyConfig,
    splits: Splits,
    study_name: str,
    device: str,
    threads: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Rebuild the spec from the flat parameters, train (telling `on_epoch` each epoch's
    validation accuracy), save the weights; returns what the searcher is told: the
    measurements, or why the trial failed. Each epoch is checkpointed, and an earlier
    attempt's checkpoint of the same configuration is resumed from; the searcher deletes it
    once the outcome is recorded."""
    number, seed = ray_params[TRIAL_KEY], ray_params[SEED_KEY]
    params = {k: v for k, v in ray_params.items() if k not in (TRIAL_KEY, SEED_KEY)}
    checkpoint = weights.checkpoint_path(settings, study_name, params, seed)
    try:
        spec = settings.space().replay(params, seed=seed)
        result = train(
            spec,
            splits,
            device=device,
            threads=threads,
            on_epoch=on_epoch,
            checkpoint=checkpoint,
        )
    except Diverged as err:
        return {ledger.FAILURE: ledger.DIVERGED, ledger.REASON: str(err)}
    except Exception as err:  # any bug or resource error fails this trial, not the study
        last = traceback.format_exc().strip().splitlines()[-3:]
        return {ledger.FAILURE: ledger.ERROR, ledger.REASON: f"{err!r} | {' | '.join(last)}"}
    weights.save(result.model, weights.weights_path(settings, study_name, number))
    return {
        **result.metrics(),
        ledger.CHANNELS: "-".join(map(str, stage_channels(result.model.arch))),
        ledger.BUDGET: spec.budget,
        ledger.FAILURE: "",
        ledger.THREADS: threads,
        ledger.DEVICE: device,
    }


class LastSlotTaken(Exception):
    """Another driver asked for the study's last trial at the same moment, and won."""


class StudySearcher(Searcher):
    """A Ray Tune searcher that proposes from, and records into, an Optuna study.

    Each configuration (parameters and seed) is trained once per study; with `--seeds K`,
    the seeds a proposed configuration lacks are queued before the sampler proposes again
    (`search.seeds.top_up`). A proposal equal to a finished trial is not trained: it is told
    that trial's outcome, so the sampler learns it, and marked `duplicate_of`. A proposal
    equal to a running trial is told FAIL (`duplicate`): its outcome is not known yet, and
    the sampler learns it from the running trial when that finishes. Duplicates never count
    towards the target. A finite space whose every configuration is tried ends the search,
    which says so.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        settings: StudyConfig,
        in_shape: tuple[int, int, int],
        num_classes: int,
        board: Board,
    ):
        super().__init__()  # no Tune metric: failed trials report none, the study judges
        self.study, self.space, self.settings = study, space, settings
        self.in_shape, self.num_classes = in_shape, num_classes
        self.board = board  # shown every event
        self.live: dict[str, optuna.Trial] = {}
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
            if not waiting and seeds.top_up(self.study, trials, self.settings):
                continue  # the seeds a configuration lacks (`--seeds K`) before a new one
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
        """One proposal: the configuration to train, or None when it was recorded untrained
        (a duplicate, over the budget, or impossible to build)."""
        trial = self._ask(untried)
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
        self.live[trial_id] = trial
        self.board.started(trial, spec.train.epochs)
        return {**trial.params, TRIAL_KEY: trial.number, SEED_KEY: seed}

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
        """Record a trial's per-epoch report and show it; returns whether successive halving
        stopped the trial there (it is then recorded PRUNED)."""
        trial = self.live.get(trial_id)
        if trial is None:
            return False
        epoch, accuracy = result[EPOCH_KEY], result[ledger.EPOCH_ACCURACY]
        failpoints.reached("epoch")  # mid-trial, its epoch's checkpoint written
        epochs = self.space.replay(trial.params).train.epochs  # the recipe may search it
        try:
            pruned = halving.report(self.study, trial, self.space.pruner, epochs, epoch, accuracy)
        except optuna.exceptions.UpdateFinishedTrialError:  # another driver judged it dead
            del self.live[trial_id]
            self.board.ended(trial.number, "already recorded as interrupted: stopped")
            return True
        self.board.epoch(trial.number, epoch, accuracy, result["time_total_s"])
        if pruned:
            del self.live[trial_id]
            self._drop_checkpoint(trial)
            recorded = self.study.trials[trial.number]
            self.board.ended(trial.number, progress.outcome(recorded, self.space.objectives))
        return pruned

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:  # pruned already, or not ours
            return
        try:
            self._record(trial, result, error)
        except optuna.exceptions.UpdateFinishedTrialError:  # another driver judged it dead
            self.board.ended(trial.number, "already recorded as interrupted: result dropped")
            return
        recorded = self.study.trials[trial.number]
        if recorded.user_attrs.get(ledger.FAILURE) != ledger.INTERRUPTED:
            self._drop_checkpoint(trial)
        self.board.ended(trial.number, progress.outcome(recorded, self.space.objectives))

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
        return [t._trial_id for t in list(self.live.values())]

    def interrupted(self) -> int:
        """Record every trial still running as interrupted; returns how many."""
        for trial in self.live.values():
            ledger.fail(self.study, trial.number, ledger.INTERRUPTED, "stopped before it finished")
        count, self.live = len(self.live), {}
        return count


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
            address=address,
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
        raise UsageError(
            f"cannot reach the Ray cluster at {address!r}: {reason}. Accepted: the address "
            "`ray start --head` printed (host:port), 'auto' for a cluster on this machine, "
            "or no --address to start Ray here"
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
    searcher = StudySearcher(study, space, settings, splits.image_shape, splits.num_classes, board)
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
