"""A study's configurations: the trials that trained one configuration (its paired seeds)
taken together, each objective's mean over them with the noise of that mean, and the
noise-aware Pareto front over them (`search.front`), which `search run` prints, the export
marks in its `front` column and the report shows.

Optuna's own front (`ledger.pareto_front`, the export's `pareto` column, `--strict-front`)
compares single trials as measured. This one compares configurations by their means over
seeds and lets a configuration go only when another beats it beyond the noise of both: a
latency 1% lower inside the spread of its timing, or an accuracy inside the seeds' spread,
keeps nothing on it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import front, ledger, stats
from spaces import Space


@dataclass(frozen=True)
class Configuration:
    """The trials that trained one configuration, one per seed, and per objective (in the
    space's order) their mean and its noise half-width by `front.RULE`."""

    trials: tuple[FrozenTrial, ...]
    means: tuple[float, ...]
    noise: tuple[float, ...]

    @property
    def numbers(self) -> tuple[int, ...]:
        return tuple(t.number for t in self.trials)

    def interval(self, index: int) -> stats.Interval:
        """The 95% t-interval over seeds of objective `index` (NaN bounds with one seed)."""
        return stats.t_interval([t.values[index] for t in self.trials])


def _noise(objective: str, values: list[float], trials: Sequence[FrozenTrial]) -> float:
    """An objective's noise half-width by `front.RULE`: the seeds' spread for accuracy, the
    timing's for latency (the median IQR over the seeds' timings), none for what is counted."""
    if objective == "accuracy":
        return front.seed_noise(values)
    if objective == "latency_ms":
        iqrs = [t.user_attrs.get("latency_iqr_ms") for t in trials]
        known = [v for v in iqrs if v is not None]
        return front.latency_noise(
            statistics.fmean(values), statistics.median(known) if known else None
        )
    return 0.0  # parameters, budget: counted, not measured


def configurations(trials: Iterable[FrozenTrial], objectives: Sequence[str]) -> list[Configuration]:
    """The trained configurations of a study, in the order of their first trial: its complete
    trials grouped by `ledger.configuration` (a duplicate reused a result: no seed of its
    own)."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and ledger.DUPLICATE_OF not in t.user_attrs:
            groups.setdefault(ledger.configuration(t), []).append(t)
    found = []
    for group in groups.values():
        columns = [list(v) for v in zip(*(t.values for t in group), strict=True)]
        found.append(
            Configuration(
                tuple(group),
                tuple(statistics.fmean(v) for v in columns),
                tuple(_noise(o, v, group) for o, v in zip(objectives, columns, strict=True)),
            )
        )
    return found


def noise_aware_front(
    trials: Iterable[FrozenTrial], objectives: Sequence[str], directions: Sequence[str]
) -> list[Configuration]:
    """The configurations on the noise-aware Pareto front of their means (`front.RULE`)."""
    found = configurations(trials, objectives)
    if not found:
        return []
    kept = front.noise_front([c.means for c in found], directions, [c.noise for c in found])
    return [c for c, keep in zip(found, kept, strict=True) if keep]


def on_either_front(study: optuna.Study, space: Space) -> list[FrozenTrial]:
    """The trials of Optuna's front and of the noise-aware one (every seed of its
    configurations), in trial order: those a run re-times alone."""
    trials = study.get_trials(deepcopy=False)
    front_ = noise_aware_front(trials, space.objectives, space.directions)
    numbers = {n for c in front_ for n in c.numbers} | {
        t.number for t in ledger.pareto_front(study)
    }
    return [t for t in trials if t.number in numbers]
