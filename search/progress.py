"""How a study's progress reads, in the lines a run prints and in `search status`: numbers
and durations as people read them, the best trial so far, and when the study should be
done."""

from __future__ import annotations

import time
from collections.abc import Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import ledger
from spaces import Space
from spaces.space import TRAIN_PREFIX

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


def best(trials: Iterable[FrozenTrial], space: Space) -> FrozenTrial | None:
    """The finished trial best on the space's first objective (the first of equals), or
    None before any trial finished."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pick = max if space.directions[0] == "maximize" else min
    return pick(complete, key=lambda t: t.values[0], default=None)


class Eta:
    """The study's remaining wall time: epochs still to train, at the rate (epochs per
    second, all parallel trials together) this run has trained them so far.

    A trial still to start is expected to train as many epochs as the study's finished
    trials did on average (fewer than all epochs once successive halving prunes, other
    numbers where the recipe searches them); a running one, its own epochs.
    """

    def __init__(self, study: optuna.Study, epochs: int, halving: bool = False):
        self.study, self.epochs, self.halving = study, epochs, halving
        self.start = time.perf_counter()
        self.trained = 0  # epochs trained in this run
        # running trial number -> (epochs it has trained, epochs it trains)
        self.at: dict[int, tuple[int, int]] = {}

    def epoch(self, number: int, epoch: int, epochs: int) -> None:
        self.at[number] = (epoch, epochs)
        self.trained += 1

    def finished(self, number: int) -> None:
        self.at.pop(number, None)

    def remaining(self, target: int) -> str:
        """The estimate, or '?' before the first epoch of this run."""
        if not self.trained:
            return "?"
        trials = self.study.get_trials(deepcopy=False)
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
