"""What the progress lines say while a study runs: numbers as people read them, and when
the study should be done."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from search import study as studies
from search.halving import PRUNED_EPOCH
from spaces.space import TRAIN_PREFIX

EPOCHS_PARAM = f"{TRAIN_PREFIX}epochs"  # a trial's epochs, where the recipe searches them

COUNTS = ("params", "budget")  # objectives that count parameters: printed as 139,781


def value(objective: str, number: float) -> str:
    """An objective's value for a progress line or table."""
    return f"{int(number):,}" if objective in COUNTS else f"{number:.4g}"


def duration(seconds: float) -> str:
    """45s, 12m, 1h05m."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


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
            t.user_attrs.get(PRUNED_EPOCH, t.params.get(EPOCHS_PARAM, self.epochs))
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and studies.counted(t)
        ]
        per_trial = sum(spent) / len(spent) if spent else self.epochs
        done = sum(studies.counted(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        # Under halving, a running trial past the average is one it kept: it goes to the end.
        left = max(0, target - done - running) * per_trial + sum(
            (per_trial if self.halving and e < per_trial else epochs) - e
            for e, epochs in self.at.values()
        )
        rate = self.trained / (time.perf_counter() - self.start)
        return duration(left / rate)
