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
import torch
from optuna.trial import FrozenTrial, TrialState

from search import failpoints, halving, progress
from search import study as studies
from search.errors import UsageError
from search.latency import ATTR, alone_ms
from search.study import StudyConfig, weights_path
from spaces import Space
from trainer.budget import resolve_arch
from trainer.data import DeviceData, Splits
from trainer.models.net import Net
from trainer.train import evaluate

FORMATS = ("csv", "json", "parquet")
# The measurements as columns; how the trial ran (device, threads, and the epoch it resumed
# from after an interruption) follows them in a row.
HOW = ("device", "threads", "resumed_from_epoch")
# Measured values of recipe fields: the row shows them in the field's column, in place of
# the value the configuration asked for.
AS_TRAINED = {"batch_size": "train.batch_size"}
MEASURED = tuple(a for a in studies.RESULT_ATTRS if a not in HOW and a not in AS_TRAINED)
IDENTITY = (*studies.CARRIED_ATTRS, "rerun_of", "duplicate_of")
# A pruned trial trained only up to its rung: how far, and its validation accuracy there.
HALVING = (halving.PRUNED_EPOCH, halving.PARTIAL_ACCURACY)


def pareto_numbers(study: optuna.Study) -> set[int]:
    return {t.number for t in studies.pareto_front(study)}


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
        **{k: trial.user_attrs.get(k) for k in studies.WHERE_ATTRS},
        **{k: trial.user_attrs.get(k) for k in IDENTITY + HALVING},
        "seed": seed,  # the training seed
        "failure": trial.user_attrs.get("failure"),
        "reason": trial.user_attrs.get("reason"),
    }
    if trial.params or trial.state == TrialState.COMPLETE:  # a queued trial has none yet
        row.update(space.columns(trial.params, seed))
        for attr, column in AS_TRAINED.items():
            if trial.user_attrs.get(attr) is not None:  # studies before it record the asked
                row[column] = trial.user_attrs[attr]
    return row


def rows(study: optuna.Study, config: StudyConfig, *, only_pareto: bool) -> list[dict[str, Any]]:
    space = config.space()
    pareto = pareto_numbers(study)
    trials = study.get_trials(deepcopy=False)
    if only_pareto:
        trials = [t for t in trials if t.number in pareto]
    alone = study.user_attrs.get(ATTR, {})
    return [trial_row(t, space, studies.seed_of(t, config), pareto, alone) for t in trials]


def test_accuracy(
    trial: FrozenTrial, config: StudyConfig, splits: Splits, study_name: str
) -> float:
    """Accuracy of a finished trial's saved weights on the test split."""
    path = weights_path(config, study_name, trial.number)
    if not path.is_file():
        raise UsageError(
            f"no saved weights for trial {trial.number} at {path}; on a multi-machine cluster "
            "the weights directory must be shared by every node"
        )
    spec = config.space().replay(trial.params, studies.seed_of(trial, config))
    arch = resolve_arch(spec, splits.image_shape, splits.num_classes).arch
    model = Net(arch, splits.image_shape, splits.num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    test = DeviceData(splits.x_test, splits.y_test, splits.mean, splits.std)
    return evaluate(model, test)


def write(table: list[dict[str, Any]], fmt: str, path: Path | None) -> str | None:
    """Write `table` to `path` (atomically), or return it as text when no path is given.
    Parquet is binary and needs a path."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("--format parquet writes a binary file: give it with -o FILE")
        partial = path.with_name(path.name + ".partial")
        pd.DataFrame(table).to_parquet(partial, engine="pyarrow", index=False)
        partial.replace(path)
        return None
    if fmt == "csv":
        text = pd.DataFrame(table).to_csv(index=False)
    else:
        text = json.dumps(table, indent=2, default=str)
    if path is None:
        return text
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text)
        failpoints.reached("export")
        partial.replace(path)
    except OSError as err:
        partial.unlink(missing_ok=True)
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
