"""Successive halving (asynchronous, ASHA) driven from the study: which trial stops where.

Optuna offers no pruning in multi-objective studies (`Trial.report` and `should_prune`
raise), and Ray Tune's schedulers keep their rungs in the memory of one driver. So the
rungs are read from the study itself, the one record every driver and every resume shares:

- each trial's validation accuracy after every epoch is its user attribute `epoch_accuracy`;
- a trial reaching a rung epoch goes on only if its accuracy there is among the top
  1/`reduction` of the accuracies all of the study's trials (running, finished or pruned)
  had at that same epoch, its own included, as Optuna's `SuccessiveHalvingPruner` ranks;
- a stopped trial is told PRUNED, never COMPLETE, so it is never on the Pareto front; its
  partial accuracy stays in user attributes only (`partial_accuracy`, `pruned_epoch`), not
  in the trial's values, which also keeps TPE from reading it as an objective;
- a stopped trial carries a positive constraint, `halving`, that ranks it for TPE (see
  `rank`): TPE orders pruned trials by their last intermediate value, which a
  multi-objective study cannot report, so untied they all scored alike and the earliest
  ones filled TPE's "good" group whenever fewer trials had completed than it holds;
- the baseline is never stopped: it is the reference every ablation compares against.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import ledger
from spaces.space import PrunerChoice

# Trials whose accuracies a rung compares; a failed or interrupted trial is left out (an
# interrupted one is trained again and would count twice).
COMPARED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


# The constraint that ranks a stopped trial for TPE.
CONSTRAINT = "halving"


def rank(epochs: int, epoch: int, accuracy: float) -> float:
    """A stopped trial's constraint value: TPE ranks infeasible trials after the completed
    ones, smallest total first. Stopped later first, then more accurate at that rung: the
    order Optuna gives pruned trials of a single-objective study. At least 1, never 0 (0
    would read as feasible)."""
    return (epochs - epoch) + (1.0 - accuracy) / 2


def accuracy_at(trial: FrozenTrial, epoch: int) -> float | None:
    """`trial`'s validation accuracy after `epoch`, if it reported one."""
    accuracies = trial.user_attrs.get(ledger.EPOCH_ACCURACY, [])
    return accuracies[epoch - 1] if len(accuracies) >= epoch else None


def stops(
    trials: list[FrozenTrial],
    pruner: PrunerChoice,
    epochs: int,
    number: int,
    epoch: int,
    accuracy: float,
) -> bool:
    """Whether trial `number`, at `accuracy` after `epoch` of `epochs`, is stopped there, given
    the study's `trials`. Only rung epochs stop anything."""
    if epoch not in pruner.rungs(epochs):
        return False
    rivals = (accuracy_at(t, epoch) for t in trials if t.number != number and t.state in COMPARED)
    ranked = sorted([a for a in rivals if a is not None] + [accuracy], reverse=True)
    kept = max(1, len(ranked) // pruner.reduction)
    return accuracy < ranked[kept - 1]


def report(
    study: optuna.Study,
    trial: optuna.Trial,
    pruner: PrunerChoice,
    epochs: int,
    epoch: int,
    accuracy: float,
) -> bool:
    """Record `trial`'s accuracy after `epoch`; when halving stops it there, tell the study
    PRUNED and return True. The baseline is never stopped."""
    history = [*trial.user_attrs.get(ledger.EPOCH_ACCURACY, [])[: epoch - 1], accuracy]
    trial.set_user_attr(ledger.EPOCH_ACCURACY, history)
    if trial.user_attrs.get(ledger.BASELINE) or not stops(
        study.get_trials(deepcopy=False), pruner, epochs, trial.number, epoch, accuracy
    ):
        return False
    trial.set_user_attr(ledger.PRUNED_EPOCH, epoch)
    trial.set_user_attr(ledger.PARTIAL_ACCURACY, accuracy)
    trial.set_constraint(CONSTRAINT, rank(epochs, epoch, accuracy))
    study.tell(trial, state=TrialState.PRUNED)
    return True
