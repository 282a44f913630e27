"""A study as rows: one per trial, its measurements (objectives or not), its identity
(seed, baseline, re-run and duplicate links), and every technique's switch and
hyperparameters as `.`-named columns, and, on request, the test accuracy of the Pareto
trials. Selection always used the validation split; the test set is read only here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search import failpoints, ledger, progress, weights
from search.errors import UsageError
from search.latency import ATTR, alone_ms
from search.study import StudyConfig
from spaces import Space
from trainer.atomic import write_atomic
from trainer.data import DeviceData, Splits
from trainer.train import evaluate

FORMATS = ("csv", "json", "parquet")
# The measurements as columns; how the trial ran (device, threads, and the epoch it resumed
# from after an interruption) follows them in a row.
HOW = (ledger.DEVICE, ledger.THREADS, ledger.RESUMED_FROM_EPOCH)
# Measured values of recipe fields: the row shows them in the field's column, in place of
# the value the configuration asked for.
AS_TRAINED = {ledger.BATCH_SIZE: "train.batch_size"}
MEASURED = tuple(a for a in ledger.RESULT_ATTRS if a not in HOW and a not in AS_TRAINED)
IDENTITY = (*ledger.CARRIED_ATTRS, ledger.RERUN_OF, ledger.DUPLICATE_OF)
# A pruned trial trained only up to its rung: how far, and its validation accuracy there.
HALVING = (ledger.PRUNED_EPOCH, ledger.PARTIAL_ACCURACY)


def pareto_numbers(study: optuna.Study) -> set[int]:
    return {t.number for t in ledger.pareto_front(study)}


def measured(trial: FrozenTrial, objectives: tuple[str, ...]) -> dict[str, Any]:
    """Every measurement of the trial: an objective's told value, else its user attribute."""
    told = dict(zip(objectives, trial.values or (), strict=False))
    row = {name: told.get(name, trial.user_attrs.get(name)) for name in MEASURED}
    if row["params"] is not None:
        row["params"] = int(row["params"])
    return row


def trial_row(
    trial: FrozenTrial, space: Space, seed: int, pareto: set[int], alone: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "pareto": trial.number in pareto,
        **measured(trial, space.objectives),
        "accuracy_split": "validation",
        "latency_ms_alone": alone_ms(alone.get(str(trial.number))),
        **{k: trial.user_attrs.get(k) for k in HOW},
        **{k: trial.user_attrs.get(k) for k in ledger.WHERE_ATTRS},
        **{k: trial.user_attrs.get(k) for k in IDENTITY + HALVING},
        "seed": seed,  # the training seed
        "failure": trial.user_attrs.get(ledger.FAILURE),
        "reason": trial.user_attrs.get(ledger.REASON),
    }
    if trial.params or trial.state == TrialState.COMPLETE:  # a queued trial has none yet
        row.update(space.columns(trial.params, seed))
        for attr, column in AS_TRAINED.items():
            if trial.user_attrs.get(attr) is not None:  # studies before it record the asked
                row[column] = trial.user_attrs[attr]
    return row


def rows(study: optuna.Study, settings: StudyConfig, *, only_pareto: bool) -> list[dict[str, Any]]:
    space = settings.space()
    pareto = pareto_numbers(study)
    trials = study.get_trials(deepcopy=False)
    if only_pareto:
        trials = [t for t in trials if t.number in pareto]
    alone = study.user_attrs.get(ATTR, {})
    return [trial_row(t, space, ledger.seed_of(t, settings.seed), pareto, alone) for t in trials]


def test_accuracy(
    trial: FrozenTrial, settings: StudyConfig, splits: Splits, study_name: str
) -> float:
    """Accuracy of a finished trial's saved weights on the test split, as deployed."""
    model = weights.trained(trial, settings, splits, study_name)
    test = DeviceData(splits.x_test, splits.y_test, splits.mean, splits.std)
    return evaluate(weights.as_deployed(model, trial, settings), test)


def write(table: list[dict[str, Any]], fmt: str, path: Path | None) -> str | None:
    """Write `table` to `path` (atomically), or return it as text when no path is given.
    Parquet is binary and needs a path."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("--format parquet writes a binary file: give it with -o FILE")
        frame = pd.DataFrame(table)
        write_atomic(path, lambda partial: frame.to_parquet(partial, engine="pyarrow", index=False))
        return None
    if fmt == "csv":
        text = pd.DataFrame(table).to_csv(index=False)
    else:
        text = json.dumps(table, indent=2, default=str)
    if path is None:
        return text

    def write_text(partial: Path) -> None:
        partial.write_text(text)
        failpoints.reached("export")  # written, not yet renamed: a crash here leaves no file

    try:
        write_atomic(path, write_text)
    except OSError as err:
        raise UsageError(f"cannot write {str(path)[:100]!r}: {err.strerror}") from None
    return None


def summary(table: list[dict[str, Any]], objectives: tuple[str, ...]) -> str:
    """The human-readable table the run prints: objectives and the techniques that were on."""
    if not table:
        return "(no finished trials)"
    lines = []
    for row in table:
        on = sorted(
            k.removesuffix(".enabled") for k, v in row.items() if k.endswith(".enabled") and v
        )
        lines.append(
            {
                "trial": row["number"],
                **{o: row[o] for o in objectives},
                "latency_ms_alone": row["latency_ms_alone"],
                "techniques": " + ".join(on) or "(none)",
            }
        )
    frame = pd.DataFrame(lines).sort_values(objectives[0], ascending=False)
    counts = {c: "{:,}".format for c in progress.COUNTS if c in frame}
    frame = frame.astype({c: int for c in counts})
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4f}", formatters=counts)
