"""The Optuna study: the one source of truth of a search, in durable storage.

A study stores, besides its trials, everything needed to continue it (the space file's
content, the trial target, the seed, the data directory), so `search resume NAME` needs
nothing but the name and the storage.
"""

from __future__ import annotations

import os
import socket
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.errors import UsageError
from spaces import Space, parse

DEFAULT_STORAGE = "sqlite:///runs/studies.db"

# Why a trial failed, in its `failure` user attribute. Only trials that trained count
# towards the study's trial target; rejected and interrupted ones are retried.
ERROR, DIVERGED, OVER_BUDGET, INTERRUPTED = "error", "diverged", "over_budget", "interrupted"
COUNTED_FAILURES = (ERROR, DIVERGED)


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Any Optuna RDB URL (sqlite, postgresql, mysql) or a journal file path (*.log, *.journal).

    The default, an SQLite file under runs/, is the only location created here; a
    storage the user names must already be reachable.
    """
    if url is None:
        Path("runs").mkdir(exist_ok=True)
        url = DEFAULT_STORAGE
    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        path = Path(url)
        if path.suffix not in (".log", ".journal"):
            raise ValueError("not a URL, and not a journal file ending in .log or .journal")
        if not path.parent.is_dir():
            raise ValueError(f"directory {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as err:  # SQLAlchemy and drivers raise many types; all mean the same here
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(
            f"cannot open storage {url!r}: {reason}. Accepted: an Optuna RDB URL such as "
            f"{DEFAULT_STORAGE} or postgresql://user:pass@host/db, or a journal file path "
            "ending in .log or .journal"
        ) from None


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

    def space(self) -> Space:
        """The study's space, with the epoch override applied."""
        space = parse(self.space_source, "<stored space>")
        if self.epochs is None:
            return space
        return replace(space, train=replace(space.train, epochs=self.epochs))


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # constant_liar: trials running in parallel are treated as pending, so parallel
        # workers are not all sent to the same point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


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
    if find_study(storage, name):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = load_config(study)
        differs = [
            what
            for what, ours, theirs in (
                ("space", config.space_source, stored.space_source),
                ("seed", config.seed, stored.seed),
                ("epochs", config.epochs, stored.epochs),
                ("design", config.design, stored.design),
                ("seeds", config.seeds, stored.seeds),
            )
            if ours != theirs
        ]
        if differs:
            raise UsageError(
                f"study {name!r} was started with another {' and '.join(differs)}; continue it "
                f"with `search resume {name}`, or give a new --study name"
            )
        return study
    study = optuna.create_study(
        study_name=name, storage=storage, directions=space.directions, sampler=sampler
    )
    for key, value in {**vars(config), **(attrs or {})}.items():
        study.set_user_attr(key, value)
    study.set_user_attr("objectives", list(space.objectives))
    if queue is None and (
        space.baseline or any(c.switch == "search" for c in space.techniques.values())
    ):
        queue = [(space.baseline_params(), {"baseline": True})]
    for params, user_attrs in queue or ():
        study.enqueue_trial(params, user_attrs=user_attrs)
    return study


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    if not find_study(storage, name):
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UsageError(
            f"no study named {name!r} in this storage; studies here: {', '.join(names) or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    config = load_config(study)
    return optuna.load_study(
        study_name=name, storage=storage, sampler=make_sampler(config.space().sampler, config.seed)
    )


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
    """Whether a trial counts towards the target: it trained to the end, or failed doing so."""
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("failure") in COUNTED_FAILURES
    )


def progress(study: optuna.Study) -> tuple[int, int]:
    """(trials counted towards the target, trials running now anywhere)."""
    trials = study.get_trials(deepcopy=False)
    return (
        sum(counted(t) for t in trials),
        sum(t.state == TrialState.RUNNING for t in trials),
    )


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


def fail_orphans(study: optuna.Study) -> int:
    """Record as interrupted the running trials whose driver on this machine has died
    (a crash or a kill), so they are retried; trials of live drivers are left alone."""
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not _alive(t.user_attrs.get("driver", ""))
    ]
    for trial in orphans:
        fail(study, trial.number, INTERRUPTED, "its search process ended before it finished")
    return len(orphans)


def fail(study: optuna.Study, number: int, failure: str, reason: str) -> None:
    """Record trial `number` as FAIL, with why, so the export shows it."""
    storage = study._storage  # Optuna exposes no public setter for another process's trial
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    storage.set_trial_user_attr(trial_id, "failure", failure)
    storage.set_trial_user_attr(trial_id, "reason", reason)
    study.tell(number, state=TrialState.FAIL)
