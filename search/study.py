"""A study and the settings it was started with: the one source of truth of a search.

A study stores, besides its trials, everything needed to continue it (the space file's
content, the trial target, the seed, the data directory), so `search resume NAME` needs
nothing but the name and the storage. Here it is created, or joined by another driver, or
loaded, each time with a sampler seeded for this driver.
"""

from __future__ import annotations

import time
import warnings
import weakref
import zlib
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

import optuna

from search import drivers, ledger
from search.errors import UsageError
from spaces import Space, parse

# Study user attributes besides the settings: the objectives' names, and a designed
# study's design (see `search.ablate.Design.attrs`).
OBJECTIVES_ATTR, DESIGN_ATTR = "objectives", "ablation"

# Each settings object's space, parsed once: id(settings) -> space, dropped with the object.
# Kept outside the (frozen) object, so `vars(settings)` holds the settings and nothing else.
_SPACES: dict[int, Space] = {}


@dataclass(frozen=True)
class StudyConfig:
    """What a study was started with, stored in its user attributes."""

    space_source: dict[str, Any]
    trials: int
    seed: int
    data_dir: str | None
    epochs: int | None
    weights_dir: str
    # A designed study (`search ablate`): its design. None for a `search run` study, whose
    # sampler proposes every configuration.
    design: str | None = None
    # Training seeds per configuration, paired (seed s is the same initialisation and data
    # order for every configuration): every configuration of a search trains them all
    # (`search run --seeds K`); a design's trains them first, and with `max_seeds` (`search
    # ablate --seeds auto`) up to that many, one round at a time, while its comparison is
    # open (`search.seeds`). `min_effect`: the difference in accuracy below which an effect
    # counts as negligible (`--min-effect`, as a fraction), None: only its sign is decided.
    seeds: int = 1
    max_seeds: int | None = None
    min_effect: float | None = None
    grace_period: float = ledger.DEFAULT_GRACE  # seconds without a heartbeat: dead
    # `--pruner`: successive halving on or off whatever the space's `search.pruner` says
    # (its min_epochs and reduction still apply). None: as the space says.
    pruner: str | None = None

    def space(self) -> Space:
        """The study's space, with the epoch and pruner overrides applied; parsed once."""
        space = _SPACES.get(id(self))
        if space is None:
            space = _SPACES[id(self)] = self._parse_space()
            weakref.finalize(self, _SPACES.pop, id(self), None)
        return space

    def _parse_space(self) -> Space:
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


def joining_seed(settings: StudyConfig) -> int:
    """The sampler seed of a driver that continues a study, or joins one other drivers work
    on: drawn from its driver id, so that drivers started alike do not all propose the same
    configurations. Only the driver that creates the study samples with the study's seed."""
    return settings.seed + zlib.crc32(drivers.driver_id().encode())


def find_study(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in optuna.get_all_study_summaries(storage))


def create_or_load(
    storage: optuna.storages.BaseStorage,
    name: str,
    space: Space,
    settings: StudyConfig,
    *,
    queue: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
    attrs: dict[str, Any] | None = None,
) -> optuna.Study:
    """Continue the study `name`, or create it with `queue`'s (parameters, user attributes)
    trials queued first (by default the baseline) and `attrs` among its user attributes."""
    sampler = make_sampler(space.sampler, settings.seed)
    if not find_study(storage, name):
        try:
            return _create(storage, name, space, settings, sampler, queue=queue, attrs=attrs)
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver created it a moment ago: join theirs
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(space.sampler, joining_seed(settings)),
    )
    stored = _wait_for_config(study)
    differs = [
        what
        for what, ours, theirs in (
            ("space", settings.space_source, stored.space_source),
            ("seed", settings.seed, stored.seed),
            ("epochs", settings.epochs, stored.epochs),
            ("design", settings.design, stored.design),
            ("seeds", settings.seeds, stored.seeds),
            ("max seeds", settings.max_seeds, stored.max_seeds),
            ("min effect", settings.min_effect, stored.min_effect),
            ("pruner", settings.space().pruner, stored.space().pruner),
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
    settings: StudyConfig,
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
        queue = [(space.baseline_params(), {ledger.BASELINE: True, ledger.SEED: settings.seed})]
    for params, user_attrs in queue or ():
        study.enqueue_trial(params, user_attrs=user_attrs)
    study.set_user_attr(OBJECTIVES_ATTR, list(space.objectives))
    with warnings.catch_warnings():  # experimental in Optuna, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(space.objectives))
    stored = {**vars(settings), **(attrs or {})}
    for key, value in sorted(stored.items(), key=lambda kv: kv[0] in _required()):
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
    settings = load_config(study)
    return optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(settings.space().sampler, joining_seed(settings)),
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


def set_target(study: optuna.Study, trials: int) -> None:
    """A new trial target: for a study continued with `--trials`, or grown by a round of
    sequential seeds."""
    study.set_user_attr("trials", trials)
