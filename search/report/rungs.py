"""A halving study's rungs (`search.pruner: asha`): what the trials showed at each epoch
where some were stopped.

Most of such a study's trials end pruned, with no objective values, so the sections built on
complete trials see only the few that went through. Their accuracies at the rungs are the
study's evidence about the rest; this section lays them out, one rung at a time, with the
caveat that they are accuracies part-way through a schedule.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState

from search import export, ledger
from search.halving import COMPARED, accuracy_at
from search.report.document import Document
from search.report.searches import marginal_table
from spaces.space import Space

# Trials at the top of a rung listed by name, best first.
LEADERS = 5


def _ended(trial: optuna.trial.FrozenTrial) -> str:
    """Where a trial ended: pruned at which rung, complete, or still running."""
    if trial.state == TrialState.PRUNED:
        return f"pruned at epoch {trial.user_attrs.get(ledger.PRUNED_EPOCH)}"
    return trial.state.name.lower()


def rung_frame(trials: list[optuna.trial.FrozenTrial], epoch: int) -> pd.DataFrame:
    """One row per trial that reached `epoch`: its parameters and its accuracy there."""
    rows = []
    for trial in trials:
        accuracy = accuracy_at(trial, epoch) if trial.state in COMPARED else None
        if accuracy is not None:
            rows.append({"number": trial.number, **trial.params, "accuracy": accuracy})
    return pd.DataFrame(rows)


def rung_sections(doc: Document, study: optuna.Study, space: Space) -> None:
    """Per rung: how many trials reached it and went on, the leaders there, and each searched
    switch's marginal effect on accuracy at that epoch over every trial that reached it."""
    epochs = space.train.epochs
    rungs = space.pruner.rungs(epochs)
    if not rungs:
        return
    trials = study.get_trials(deepcopy=False)  # read once: `study.trials` copies them all
    by_number = {t.number: t for t in trials}
    doc.heading("Successive halving: accuracy at each rung")
    doc.text(
        f"Rungs at epochs {', '.join(map(str, rungs))} of {epochs}; a trial went on when its "
        f"validation accuracy there was among the top 1/{space.pruner.reduction} of "
        "every trial's at that epoch (the baseline always went on). These are accuracies "
        "part-way through each trial's schedule: techniques whose gains come late (weight "
        "averaging by EMA or SWA, Mixup) are judged before they pay, and one seed per trial "
        "leaves seed noise in every comparison."
    )
    for epoch in rungs:
        frame = rung_frame(trials, epoch)
        if frame.empty:
            continue
        on = len(rung_frame(trials, epoch + 1))  # those that trained on past it
        doc.heading(f"Rung at epoch {epoch}: {len(frame)} trials reached it, {on} went on")
        best = frame.sort_values("accuracy", ascending=False).head(LEADERS)
        leaders = [by_number[n] for n in best["number"]]
        doc.table(
            pd.DataFrame(
                {
                    "trial": best["number"],
                    "accuracy %": (best["accuracy"] * 100).map("{:.2f}".format),
                    "techniques": [export.switched_on(space.columns(t.params)) for t in leaders],
                    "ended": [_ended(t) for t in leaders],
                }
            )
        )
        switches = [c for c in frame.columns if c.endswith(".enabled") and frame[c].nunique() > 1]
        if switches:
            doc.text(
                f"Each searched switch at epoch {epoch}: mean accuracy of the trials with it "
                "on and off (95% t-intervals) and the difference with Welch's 95% interval; "
                "the sampler chose the trials, so other switches differ between the groups."
            )
            doc.table(marginal_table(frame, switches))
