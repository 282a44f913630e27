"""`ledger.is_live`, the one test of whether a trial runs now: RUNNING, and a heartbeat (or,
never stamped, its start) no older than the grace period."""

from __future__ import annotations

import time

import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from search import ledger

GRACE = 30.0


def trial(state: TrialState = TrialState.RUNNING, beat: float | None = None) -> FrozenTrial:
    attrs = {} if beat is None else {ledger.HEARTBEAT: beat}
    return create_trial(state=state, user_attrs=attrs, values=None)


def test_a_running_trial_lives_until_its_grace_period_is_over() -> None:
    now = 1_000_000.0
    stamped = trial(beat=now - GRACE)
    assert ledger.is_live(stamped, GRACE, now)  # exactly the grace period: still alive
    assert not ledger.is_live(stamped, GRACE, now + 0.001)
    assert ledger.age(stamped, now) == GRACE


@pytest.mark.parametrize(
    "state", [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.WAITING]
)
def test_only_a_running_trial_is_live_however_fresh_its_heartbeat(state: TrialState) -> None:
    if state == TrialState.COMPLETE:
        finished = create_trial(state=state, values=[0.5], user_attrs={ledger.HEARTBEAT: 1.0})
    else:
        finished = trial(state, beat=1.0)
    assert not ledger.is_live(finished, GRACE, now=1.0)


def test_a_trial_never_stamped_lives_from_its_start() -> None:
    never = trial()
    started = never.datetime_start.timestamp()
    assert ledger.last_beat(never) == started
    assert ledger.is_live(never, GRACE, now=started + GRACE)
    assert not ledger.is_live(never, GRACE, now=started + GRACE + 1)


def test_the_clock_defaults_to_now() -> None:
    assert ledger.is_live(trial(beat=time.time() - 1), GRACE)
    assert not ledger.is_live(trial(beat=time.time() - GRACE - 5), GRACE)
