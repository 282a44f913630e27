"""`search status`: where a study stands, read from its storage alone (nothing is written),
so it can be asked from any machine while drivers work on the study elsewhere."""

from __future__ import annotations

import math
import statistics
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import drivers, ledger, progress
from search.study import StudyConfig


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _dead(trial: FrozenTrial, grace: float, now: float) -> str:
    """Why a RUNNING trial does not run any more, or '' while it does: its driver, on this
    host, is gone ("driver dead", known at once), or sent no heartbeat for the grace period
    (on another host, "stale"). Either way the next run of the study retrains it."""
    if not drivers.alive(trial.user_attrs.get(ledger.DRIVER, "")):
        return " (driver dead: its process on this host is gone, not counted)"
    if not ledger.is_live(trial, grace, now):
        return f" (stale: dead after {grace:.0f}s, not counted)"
    return ""


def report(study: optuna.Study, settings: StudyConfig, now: float | None = None) -> str:
    """Target and trials done, running trials (what each trains, its driver and heartbeat
    age, and whether that driver is dead), failures by reason, the best configuration so
    far, and an ETA from the median trial duration."""
    now = time.time() if now is None else now
    space = settings.space()
    grace = settings.grace_period
    trials = study.get_trials(deepcopy=False)
    done = ledger.done(trials)
    running = [(t, _dead(t, grace, now)) for t in trials if t.state == TrialState.RUNNING]
    live = [t for t, dead in running if not dead]
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    lines = [
        f"study {study.study_name!r} ({space.name}): {done}/{settings.trials} trials done, "
        f"{len(live)} running, {waiting} queued"
    ]

    for trial, dead in running:
        driver = trial.user_attrs.get(ledger.DRIVER, "?")
        seed = ledger.seed_of(trial, settings.seed)
        lines.append(
            f"  running trial {trial.number} ({progress.label(trial, space)}, seed {seed}): "
            f"host {drivers.host_of(driver)}, driver {driver}, "
            f"heartbeat {progress.duration(ledger.age(trial, now))} ago{dead}"
        )

    failures = ledger.failure_counts(trials)
    listed = ", ".join(f"{reason} {n}" for reason, n in failures.items())
    lines.append(f"failures: {listed or 'none'}")

    best = progress.leader(trials, space)
    if best is None:
        lines.append("best so far: none (no trial finished)")
    else:
        numbers = "" if len(best.numbers) == 1 else f" (trials {', '.join(map(str, best.numbers))})"
        lines.append(f"best so far: {best.describe(space.objectives)}{numbers}")

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
