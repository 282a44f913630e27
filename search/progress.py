"""How a study's progress reads, in what a run shows and in `search status`: numbers and
durations as people read them, what a trial trains (its label) and how it ended, the best
configuration so far, and when the study should be done."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import ledger
from spaces import Space
from spaces.space import BUDGET_PARAM, TRAIN_PREFIX
from trainer.techniques import REGISTRY

EPOCHS_PARAM = f"{TRAIN_PREFIX}epochs"  # a trial's epochs, where the recipe searches them

COUNTS = ("params", "budget")  # objectives that count parameters: printed as 139,781


def value(objective: str, number: float) -> str:
    """An objective's value for a progress line or table."""
    return f"{int(number):,}" if objective in COUNTS else f"{number:.4g}"


def duration(seconds: float) -> str:
    """45s, 12m05s, 1h05m: elapsed times, ages and ETAs, in progress lines and `search status`
    alike. Seconds are kept below an hour, so two epochs a few seconds apart read apart."""
    whole = round(seconds)
    if abs(whole) < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def named(techniques: Iterable[str]) -> str:
    """Techniques as every table and progress line names them: registry order, " + "."""
    on = set(techniques)
    return " + ".join(n for n in REGISTRY if n in on) or "(none)"


def label(trial: FrozenTrial | optuna.Trial, space: Space) -> str:
    """What a trial trains, in words: a designed study's label of its configuration (`+se`,
    `full-mixup`), else the searched techniques it switches on ("blurpool + mixup") and, where
    the space searches several, its budget level."""
    designed = trial.user_attrs.get(ledger.CONFIG)
    if designed:
        return designed
    params = trial.params
    on = [n for n in space.techniques if params.get(f"{n}.enabled")]
    # A technique the space fixes on is in every trial; without a searched one on, "no
    # technique" would misname a trial that trains it.
    fixed = any(choice.switch == "on" for choice in space.techniques.values())
    text = named(on) if on else ("no searched technique" if fixed else "no technique")
    if BUDGET_PARAM in params:
        text += f", {value('params', params[BUDGET_PARAM])} params"
    return text


def outcome(trial: FrozenTrial, objectives: Sequence[str]) -> str:
    """How a trial ended, whatever objectives the space declares: 'done: accuracy 0.91, ...',
    'pruned after epoch 1: ...', or 'failed (diverged): why'."""
    if trial.state == TrialState.COMPLETE:
        values = ", ".join(
            f"{o} {value(o, v)}" for o, v in zip(objectives, trial.values, strict=True)
        )
        return f"done: {values}"
    attrs = trial.user_attrs
    if trial.state == TrialState.PRUNED:
        return (
            f"pruned after epoch {attrs[ledger.PRUNED_EPOCH]}: accuracy "
            f"{attrs[ledger.PARTIAL_ACCURACY]:.4f} was below its rung's top"
        )
    why = attrs.get(ledger.FAILURE) or trial.state.name.lower()
    return f"failed ({why}): {attrs.get(ledger.REASON, '')}"


@dataclass(frozen=True)
class Leader:
    """The best configuration so far: its label, the trials that trained it (one per seed)
    and each objective's mean over them."""

    label: str
    numbers: tuple[int, ...]
    means: tuple[float, ...]

    def describe(self, objectives: Sequence[str]) -> str:
        """'trial 4 (blurpool), accuracy 0.93' for a configuration trained once, else
        '+se, mean of 3 seeds: accuracy 0.91'; the first len(objectives) objectives."""
        shown = zip(objectives, self.means[: len(objectives)], strict=True)
        values = ", ".join(f"{o} {value(o, v)}" for o, v in shown)
        if len(self.numbers) == 1:
            return f"trial {self.numbers[0]} ({self.label}), {values}"
        return f"{self.label}, mean of {len(self.numbers)} seeds: {values}"


def leader(trials: Iterable[FrozenTrial], space: Space) -> Leader | None:
    """The configuration best on the space's first objective, as the mean over its seeds
    (a designed study's configuration by its label, any other by its parameters), not one
    lucky seed; the first of equals; None before any trial finished. In a study of one seed
    per configuration, the best trial. A duplicate reuses a result: it is no seed of its own."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and ledger.DUPLICATE_OF not in t.user_attrs:
            groups.setdefault(ledger.configuration(t), []).append(t)
    if not groups:
        return None
    means = {
        key: tuple(statistics.fmean(v) for v in zip(*(t.values for t in group), strict=True))
        for key, group in groups.items()
    }
    pick = max if space.directions[0] == "maximize" else min
    key = pick(groups, key=lambda k: means[k][0])
    group = groups[key]
    return Leader(label(group[0], space), tuple(t.number for t in group), means[key])


class Eta:
    """The study's remaining wall time: epochs still to train, at the rate (epochs per
    second, all parallel trials together) this run has trained them so far.

    A trial still to start is expected to train as many epochs as the study's finished
    trials did on average (fewer than all epochs once successive halving prunes, other
    numbers where the recipe searches them); a running one, its own epochs.
    """

    def __init__(self, epochs: int, halving: bool = False):
        self.epochs, self.halving = epochs, halving
        self.start = time.perf_counter()
        self.trained = 0  # epochs trained in this run
        # running trial number -> (epochs it has trained, epochs it trains)
        self.at: dict[int, tuple[int, int]] = {}

    def epoch(self, number: int, epoch: int, epochs: int) -> None:
        self.at[number] = (epoch, epochs)
        self.trained += 1

    def finished(self, number: int) -> None:
        self.at.pop(number, None)

    def remaining(self, trials: Sequence[FrozenTrial], target: int) -> str:
        """The estimate for the study's `trials` to reach `target`, or '?' before the first
        epoch of this run."""
        if not self.trained:
            return "?"
        spent = [
            t.user_attrs.get(ledger.PRUNED_EPOCH, t.params.get(EPOCHS_PARAM, self.epochs))
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and ledger.counted(t)
        ]
        per_trial = sum(spent) / len(spent) if spent else self.epochs
        done = ledger.done(trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        # Under halving, a running trial past the average is one it kept: it goes to the end.
        left = max(0, target - done - running) * per_trial + sum(
            (per_trial if self.halving and e < per_trial else epochs) - e
            for e, epochs in self.at.values()
        )
        rate = self.trained / (time.perf_counter() - self.start)
        return duration(left / rate)
