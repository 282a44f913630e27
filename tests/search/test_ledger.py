"""The ledger's account of a study's failures: an interrupted trial whose configuration was
trained again since is told apart from the failures still open."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState, create_trial

from search import ledger

COMPLETE, FAIL, RUNNING = TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING


def add(study: optuna.Study, state: TrialState, **attrs: object) -> int:
    study.add_trial(
        create_trial(state=state, values=[0.9] if state == COMPLETE else None, user_attrs=attrs)
    )
    return study.trials[-1].number


def test_failures_count_an_interrupted_trial_trained_again_apart_from_open_ones() -> None:
    study = optuna.create_study(direction="maximize")
    again = add(study, FAIL, failure=ledger.INTERRUPTED)
    add(study, COMPLETE, rerun_of=again)
    twice = add(study, FAIL, failure=ledger.INTERRUPTED)
    rerun = add(study, FAIL, failure=ledger.INTERRUPTED, rerun_of=twice)  # interrupted again
    add(study, COMPLETE, rerun_of=rerun)  # ... and then trained: both are resolved
    add(study, FAIL, failure=ledger.INTERRUPTED)  # never trained again: open
    running = add(study, FAIL, failure=ledger.INTERRUPTED)
    add(study, RUNNING, rerun_of=running)  # its re-run has not finished: still open
    errored = add(study, FAIL, failure=ledger.INTERRUPTED)
    add(study, FAIL, failure=ledger.ERROR, rerun_of=errored)  # trained again, and failed
    add(study, FAIL)  # a failure stored without its reason

    assert ledger.failure_counts(study.trials) == {
        "error": 1,
        "interrupted": 2,
        "interrupted, trained again": 4,
        "unknown": 1,
    }
    assert ledger.failure_counts([]) == {}
