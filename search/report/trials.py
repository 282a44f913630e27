"""The study's trained trials as one table, the rows every section of the report reads,
and how their latency was measured: inside each trial, or re-timed alone afterwards."""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search import export, latency, ledger
from search.study import StudyConfig
from trainer.measure import RUNS, WARMUP


def trials_frame(study: optuna.Study, config: StudyConfig) -> pd.DataFrame:
    """Every trained COMPLETE trial as an export row (a duplicate, which reused another
    trial's result, is left out: it would count one training twice), with the IQR of the
    latency timed alone."""
    rows = export.rows(study, config, only_pareto=False)
    frame = pd.DataFrame(
        [r for r in rows if r["state"] == TrialState.COMPLETE.name and r["duplicate_of"] is None]
    )
    if frame.empty:
        return frame
    alone = study.user_attrs.get(latency.ATTR, {})
    frame["latency_iqr_ms_alone"] = [
        record.get("iqr_ms") if isinstance(record := alone.get(str(n)), dict) else None
        for n in frame["number"]
    ]
    return frame


def others(trials: list[FrozenTrial]) -> dict[str, int]:
    """The trials the report's table leaves out, by why: each kind of failure (an interrupted
    trial trained again apart from an open one, as `ledger.failure_counts` tells them), the
    pruned, running and queued trials, and the duplicates that reused another's result."""
    counts = ledger.failure_counts(trials)
    states = {
        TrialState.PRUNED: "pruned",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "queued",
    }
    for state, name in states.items():
        if n := sum(t.state == state for t in trials):
            counts[name] = n
    reused = [
        t for t in trials if t.state == TrialState.COMPLETE and ledger.DUPLICATE_OF in t.user_attrs
    ]
    if reused:
        counts["duplicates (reused a result)"] = len(reused)
    return counts


def latency_note(frame: pd.DataFrame, column: str) -> str:
    """How the latency figures in `column` of `frame` were measured."""
    threads = ", ".join(sorted({str(int(t)) for t in frame["threads"].dropna()}))
    devices = ", ".join(sorted({str(d) for d in frame["device"].dropna()}))
    if column == "latency_ms_alone":
        return (
            f"{column}: batch-1 inference, median of {latency.ALONE_RUNS} timed calls after "
            f"{WARMUP} warm-up calls, re-measured alone (one model at a time, in one process) "
            f"on each trial's device ({devices}) with its thread count ({threads})."
        )
    return (
        f"{column}: batch-1 inference, median of {RUNS} timed calls after {WARMUP} warm-up "
        f"calls, measured inside each trial at its end on its device ({devices}) with its "
        f"thread count ({threads}), while other trials may have been running beside it."
    )


def latency_figure(frame: pd.DataFrame) -> str:
    """The latency column to compare `frame`'s trials by: the figures timed alone when every
    one of them has one, else those measured inside the trials."""
    return "latency_ms_alone" if frame["latency_ms_alone"].notna().all() else "latency_ms"
