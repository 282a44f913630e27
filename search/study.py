"""The Optuna study: the one source of truth of a search, in durable storage.

A study stores, besides its trials, everything needed to continue it (the space file's
content, the trial target, the seed, the data directory), so `search resume NAME` needs
nothing but the name and the storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import heartbeat
from search.errors import UsageError, mask_url
from spaces import Space, check_name, parse

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
STORAGE_ENV = "SEARCH_STORAGE"  # keeps a password out of shell history and process lists

# Why a trial failed, in its `failure` user attribute. Only trials that trained (or could
# not be built) count towards the study's trial target, a pruned one too; interrupted ones
# are queued again, and a duplicate reuses another trial's outcome.
ERROR, DIVERGED, OVER_BUDGET, INTERRUPTED = "error", "diverged", "over_budget", "interrupted"
DUPLICATE = "duplicate"
COUNTED_FAILURES = (ERROR, DIVERGED)

# The user attributes that say what a trial IS: a re-run of an interrupted trial copies them.
# `seed` is the trial's training seed (initialisation and data order); the validation split
# always uses the study's seed. `config` is a designed study's label of the configuration.
CARRIED_ATTRS = ("baseline", "seed", "config")
# What a finished trial measured, kept in its user attributes whether or not the space
# declares it an objective, so every exported row is complete.
RESULT_ATTRS = (
    "accuracy",
    "budget",
    "params",
    "flops",
    "channels",  # the stem's and each stage's, as trained: after budget scaling
    "latency_ms",
    "latency_iqr_ms",
    "train_seconds",
    "images_per_second",
    "final_loss",
    "device",
    "threads",
    "resumed_from_epoch",  # epochs an earlier, interrupted attempt had trained; 0: none
    "batch_size",  # as trained: the whole train split when it is smaller than the one asked
)
# The Ray node that ran a trial, recorded for failures too.
WHERE_ATTRS = ("node", "node_ip")
# Configurations a finite space may have for the searcher to list them all.
MAX_LISTED = 4096


def open_storage(url: str | None, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Any Optuna RDB URL (sqlite, postgresql, mysql) or a journal file path (*.log, *.journal).

    The default, an SQLite file under runs/, is the only location created here; a
    storage the user names must already be reachable. With `create=False` (commands that
    only read) a missing SQLite or journal file is an error, never created. Messages show
    the URL with its password masked. Without a URL, $SEARCH_STORAGE names it.
    """
    url = url or os.environ.get(STORAGE_ENV) or None
    if url is None:
        if create:
            Path("runs").mkdir(exist_ok=True)
        url = DEFAULT_STORAGE
    local = "://" not in url or url.startswith("sqlite:///")  # a file on this machine
    if not create and local and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UsageError(
            f"no study storage {url[:100]!r}: the file does not exist, so it holds no studies "
            "(name the storage of your studies with --storage)"
        )
    try:
        if not create and not _holds_studies(url):
            raise ValueError("it holds no studies")
        if "://" in url:
            return _rdb_storage(url)
        path = Path(url)
        if path.suffix not in (".log", ".journal"):
            raise ValueError("not a URL, and not a journal file ending in .log or .journal")
        if not path.parent.is_dir():
            raise ValueError(f"directory {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as err:  # SQLAlchemy and drivers raise many types; all mean the same here
        reason = str(err).splitlines()[0][:90] if str(err) else type(err).__name__
        raise UsageError(
            mask_url(
                f"cannot open storage {url[:80]!r}: {reason}; accepted: an Optuna RDB URL "
                f"({DEFAULT_STORAGE}, postgresql://...) or a .log or .journal file"
            )
        ) from None


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage, creating its tables if need be. Two drivers started together on
    an empty database race to create them, and the loser's CREATE fails on a name the winner
    just took; the tables then exist, so trying again opens them."""
    import sqlalchemy.exc

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * 2**attempt)
    return optuna.storages.RDBStorage(url)


def _holds_studies(url: str) -> bool:
    """Whether the storage exists and has Optuna's tables, looked at without writing."""
    if "://" not in url:
        return Path(url).is_file()
    import sqlalchemy

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False  # connecting would create the file
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


@dataclass(frozen=True)
class StudyConfig:
    """What a study was started with, stored in its user attributes."""

    space_source: dict[str, Any]
    trials: int
    seed: int
    data_dir: str | None
    epochs: int | None
    weights_dir: str
    # A designed study (`search ablate`): its design, and the training seeds per
    # configuration. None for a `search run` study, whose sampler proposes every trial.
    design: str | None = None
    seeds: int = 1
    grace_period: float = heartbeat.DEFAULT_GRACE  # seconds without a heartbeat: dead
    # `--pruner`: successive halving on or off whatever the space's `search.pruner` says
    # (its min_epochs and reduction still apply). None: as the space says.
    pruner: str | None = None

    def space(self) -> Space:
        """The study's space, with the epoch and pruner overrides applied."""
        # Studies stored before spaces kept their name have none: "space" stands in.
        space = parse({"name": "space", **self.space_source}, "<stored space>", stored=True)
        if self.epochs is not None:
            space = space.with_epochs(self.epochs)
        if self.pruner is not None:
            space = replace(space, pruner=replace(space.pruner, kind=self.pruner))
        return space


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # constant_liar: trials running in parallel are treated as pending, so parallel
        # workers are not all sent to the same point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def joining_seed(config: StudyConfig) -> int:
    """The sampler seed of a driver that continues a study, or joins one other drivers work
    on: drawn from its driver id, so that drivers started alike do not all propose the same
    configurations. Only the driver that creates the study samples with the study's seed."""
    return config.seed + zlib.crc32(driver_id().encode())


def find_study(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in optuna.get_all_study_summaries(storage))


def create_or_load(
    storage: optuna.storages.BaseStorage,
    name: str,
    space: Space,
    config: StudyConfig,
    *,
    queue: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
    attrs: dict[str, Any] | None = None,
) -> optuna.Study:
    """Continue the study `name`, or create it with `queue`'s (parameters, user attributes)
    trials queued first (by default the baseline) and `attrs` among its user attributes."""
    sampler = make_sampler(space.sampler, config.seed)
    if not find_study(storage, name):
        try:
            return _create(storage, name, space, config, sampler, queue=queue, attrs=attrs)
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver created it a moment ago: join theirs
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(space.sampler, joining_seed(config))
    )
    stored = _wait_for_config(study)
    differs = [
        what
        for what, ours, theirs in (
            ("space", config.space_source, stored.space_source),
            ("seed", config.seed, stored.seed),
            ("epochs", config.epochs, stored.epochs),
            ("design", config.design, stored.design),
            ("seeds", config.seeds, stored.seeds),
            ("pruner", config.space().pruner, stored.space().pruner),
        )
        if ours != theirs
    ]
    if differs:
        raise UsageError(
            f"study {name!r} was started with another {' and '.join(differs)}; continue it "
            f"with `search resume {name}`, or give a new --study name"
        )
    return study


def _create(
    storage: optuna.storages.BaseStorage,
    name: str,
    space: Space,
    config: StudyConfig,
    sampler: optuna.samplers.BaseSampler,
    *,
    queue: list[tuple[dict[str, Any], dict[str, Any]]] | None,
    attrs: dict[str, Any] | None,
) -> optuna.Study:
    """A new study with its queue first. A driver that joins at the same moment waits for
    the required settings, so the queue and the optional settings are written before them."""
    study = optuna.create_study(
        study_name=name, storage=storage, directions=space.directions, sampler=sampler
    )
    if queue is None and (
        space.baseline or any(c.switch == "search" for c in space.techniques.values())
    ):
        queue = [(space.baseline_params(), {"baseline": True, "seed": config.seed})]
    for params, user_attrs in queue or ():
        study.enqueue_trial(params, user_attrs=user_attrs)
    study.set_user_attr("objectives", list(space.objectives))
    with warnings.catch_warnings():  # experimental in Optuna, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(space.objectives))
    settings = {**vars(config), **(attrs or {})}
    for key, value in sorted(settings.items(), key=lambda kv: kv[0] in _required()):
        study.set_user_attr(key, value)
    return study


def _required() -> set[str]:
    return {f.name for f in fields(StudyConfig) if f.default is MISSING}


def _wait_for_config(study: optuna.Study, timeout: float = 30.0) -> StudyConfig:
    """The study's settings; a study created a moment ago by another driver gets `timeout`
    seconds to have them written."""
    deadline = time.monotonic() + timeout
    while not _required() <= study.user_attrs.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
    return load_config(study)


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    if not find_study(storage, name):
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        listed = ", ".join(n[:40] for n in names[:5]) + (", ..." if len(names) > 5 else "")
        raise UsageError(
            f"no study named {name[:100]!r} in this storage; studies here: {listed or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    config = load_config(study)
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(config.space().sampler, joining_seed(config)),
    )


def weights_path(config: StudyConfig, study_name: str, number: int) -> Path:
    """runs/weights/<study>/trial_<n>.pt: the name is checked, so a path never leaves
    the weights folder whatever a study is called."""
    check_name(study_name, "study name")
    return Path(config.weights_dir) / study_name / f"trial_{number}.pt"


def checkpoint_path(
    config: StudyConfig, study_name: str, params: dict[str, Any], seed: int
) -> Path:
    """runs/weights/<study>/checkpoints/<key hash>.pt: a trial's per-epoch checkpoint, named
    by what the trial IS (its configuration key), not its number, so that the re-run of an
    interrupted trial, a new trial number, finds it."""
    check_name(study_name, "study name")
    key = hashlib.sha256(config_key(params, seed).encode()).hexdigest()[:24]
    return Path(config.weights_dir) / study_name / "checkpoints" / f"{key}.pt"


def load_config(study: optuna.Study) -> StudyConfig:
    """The study's settings; fields added since it was created take their defaults."""
    attrs = study.user_attrs
    known = fields(StudyConfig)
    if any(f.name not in attrs and f.default is MISSING for f in known):
        raise UsageError(
            f"study {study.study_name!r} was not created by this tool (its settings are missing)"
        )
    return StudyConfig(**{f.name: attrs[f.name] for f in known if f.name in attrs})


def counted(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards the target: it trained to the end, was stopped by
    successive halving, or failed training. A duplicate trained nothing, whatever outcome
    it reuses."""
    if "duplicate_of" in trial.user_attrs:
        return False
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure") in COUNTED_FAILURES
    )


def seed_of(trial: FrozenTrial, config: StudyConfig) -> int:
    """The trial's training seed; studies stored before trials carried one used the study's."""
    return trial.user_attrs.get("seed", config.seed)


def config_key(params: dict[str, Any], seed: int) -> str:
    """What makes two trials the same configuration: equal parameters and equal seed. Such
    trials are trained once per study."""
    return json.dumps([sorted(params.items()), seed])


def known_configurations(
    trials: Iterable[FrozenTrial], config: StudyConfig
) -> dict[str, FrozenTrial]:
    """The trained, failed and running configurations of a study by key, each with the trial
    that trained (or trains) it. Interrupted trials are left out: they are trained again."""
    return {
        config_key(t.params, seed_of(t, config)): t
        for t in trials
        if "duplicate_of" not in t.user_attrs and (counted(t) or t.state == TrialState.RUNNING)
    }


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto-optimal trials that trained; a duplicate stands for its original."""
    numbers = {t.user_attrs.get("duplicate_of", t.number) for t in study.best_trials}
    return [t for t in study.get_trials(deepcopy=False) if t.number in numbers]


class _Branch(Exception):
    """A parameter `_Probe` has no answer for, with its values (None: a continuum)."""

    def __init__(self, name: str, values: list[Any] | None):
        super().__init__(name)
        self.name, self.values = name, values


class _Probe:
    """A stand-in for an Optuna trial that answers from fixed parameters, so that walking
    a define-by-run space lists its configurations, conditional parameters included."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.user_attrs: dict[str, Any] = {}

    def _answer(self, name: str, values: list[Any] | None) -> Any:
        if name not in self.params:
            raise _Branch(name, values)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Iterable[Any]) -> Any:
        return self._answer(name, list(choices))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        values = range(low, high + 1, step)
        return self._answer(name, list(values) if len(values) <= MAX_LISTED else None)

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return self._answer(name, [low] if low == high else None)

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def finite_configurations(space: Space, limit: int = MAX_LISTED) -> list[dict[str, Any]] | None:
    """Every configuration of `space` as a parameter dict, or None when it has a continuous
    parameter or more than `limit` configurations."""
    found: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = [{}]
    while stack:
        params = stack.pop()
        try:
            space.suggest(_Probe(params))  # type: ignore[arg-type]
        except _Branch as branch:
            if branch.values is None:
                return None
            stack.extend({**params, branch.name: v} for v in reversed(branch.values))
        else:
            found.append(params)
        if len(found) + len(stack) > limit:
            return None
    return found


def requeue_interrupted(study: optuna.Study) -> int:
    """Queue again the interrupted trials not re-run yet, with their exact parameters and
    identity (`CARRIED_ATTRS`, plus `rerun_of`), baseline first; returns how many.

    The study then trains what an uninterrupted run would have: no reference, and no
    configuration that happened to be running at a crash, is lost.
    """
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs.get("rerun_of") for t in trials}
    pending = sorted(
        (
            t
            for t in trials
            if t.state == TrialState.FAIL
            and t.user_attrs.get("failure") == INTERRUPTED
            and t.number not in rerun
        ),
        key=lambda t: (not t.user_attrs.get("baseline", False), t.number),
    )
    for trial in pending:
        carried = {k: trial.user_attrs[k] for k in CARRIED_ATTRS if k in trial.user_attrs}
        study.enqueue_trial(trial.params, user_attrs={**carried, "rerun_of": trial.number})
    return len(pending)


def progress(study: optuna.Study, grace: float = heartbeat.DEFAULT_GRACE) -> tuple[int, int]:
    """(trials counted towards the target, trials running now anywhere). A running trial
    without a heartbeat for `grace` seconds is not running: its driver is dead or hung."""
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    return (
        sum(counted(t) for t in trials),
        sum(
            t.state == TrialState.RUNNING and not heartbeat.is_stale(t, grace, now) for t in trials
        ),
    )


def over_target(study: optuna.Study, number: int, target: int, grace: float) -> bool:
    """Whether trial `number`, asked a moment ago, would take the study past its target.
    Two drivers that ask at once both see both trials (numbers are given out in order, under
    a lock), so both agree that the later number is the one too many."""
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    ahead = sum(
        t.state == TrialState.RUNNING
        and t.number < number
        and not heartbeat.is_stale(t, grace, now)
        for t in trials
    )
    return sum(counted(t) for t in trials) + ahead >= target


def give_back(study: optuna.Study, number: int) -> None:
    """Return a trial asked for but not started to the queue, for whichever driver asks next."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_state_values(trial_id, TrialState.WAITING)


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(driver: str) -> bool:
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's driver: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_orphans(study: optuna.Study, grace: float = heartbeat.DEFAULT_GRACE) -> int:
    """Record as interrupted the running trials whose driver has died, so they are retried:
    at once for a driver on this machine whose process is gone, after `grace` seconds
    without a heartbeat for a driver anywhere. Trials of live drivers are left alone."""
    now = time.time()
    orphans = [
        (t, "its search process ended before it finished")
        if not _alive(t.user_attrs.get("driver", ""))
        else (t, f"its search process on {_host(t)} sent no heartbeat for {grace:.0f}s")
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not _alive(t.user_attrs.get("driver", "")) or heartbeat.is_stale(t, grace, now)
    ]
    for trial, reason in orphans:
        fail(study, trial.number, INTERRUPTED, reason)
    return len(orphans)


def _host(trial: FrozenTrial) -> str:
    return trial.user_attrs.get("driver", "?:").rpartition(":")[0] or "?"


def fail(study: optuna.Study, number: int, failure: str, reason: str) -> None:
    """Record trial `number` as FAIL, with why, so the export shows it. A trial another
    driver finished meanwhile keeps its record."""
    storage = study._storage  # Optuna exposes no public setter for another process's trial
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    try:
        storage.set_trial_user_attr(trial_id, "failure", failure)
        storage.set_trial_user_attr(trial_id, "reason", reason)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
