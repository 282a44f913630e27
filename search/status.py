"""`search status`: where a study stands, read from its storage alone (nothing is written),
so it can be asked from any machine while drivers work on the study elsewhere."""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import drivers, ledger, progress
from search.study import StudyConfig


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def report(study: optuna.Study, settings: StudyConfig, now: float | None = None) -> str:
    """Target and trials done, running trials with driver and heartbeat age, failures by
    reason, the best trial so far, and an ETA from the median trial duration."""
    now = time.time() if now is None else now
    space = settings.space()
    grace = settings.grace_period
    trials = study.get_trials(deepcopy=False)
    done = ledger.done(trials)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    live = [t for t in running if ledger.is_live(t, grace, now)]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    lines = [
        f"study {study.study_name!r} ({space.name}): {done}/{settings.trials} trials done, "
        f"{len(live)} running, {waiting} queued"
    ]

    for trial in running:
        driver = trial.user_attrs.get(ledger.DRIVER, "?")
        stale = (
            ""
            if ledger.is_live(trial, grace, now)
            else f" (stale: dead after {grace:.0f}s, not counted)"
        )
        lines.append(
            f"  running trial {trial.number}: host {drivers.host_of(driver)}, "
            f"driver {driver}, heartbeat {progress.duration(ledger.age(trial, now))} ago{stale}"
        )

    failures = Counter(
        t.user_attrs.get(ledger.FAILURE) or "unknown" for t in trials if t.state == TrialState.FAIL
    )
    listed = ", ".join(f"{reason} {n}" for reason, n in sorted(failures.items()))
    lines.append(f"failures: {listed or 'none'}")

    best = progress.best(trials, space)
    if best is not None:
        values = ", ".join(
            f"{o} {v:.4g}" for o, v in zip(space.objectives, best.values, strict=True)
        )
        lines.append(f"best so far: trial {best.number}, {values}")
    else:
        lines.append("best so far: none (no trial finished)")

    durations = [d for t in trials if ledger.counted(t) and (d := _duration(t)) is not None]
    left = max(0, settings.trials - done)
    if left == 0:
        lines.append("ETA: target reached")
    elif not durations:
        lines.append("ETA: unknown until a trial finishes")
    else:
        median = statistics.median(durations)
        waves = math.ceil(left / max(1, len(live)))
        lines.append(
            f"ETA: about {progress.duration(waves * median)} ({left} trials left, median trial "
            f"{progress.duration(median)}, {max(1, len(live))} at a time)"
        )
    return "\n".join(lines)
