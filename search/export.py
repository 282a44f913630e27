"""A study as rows: one per trial, its measurements (objectives or not), whether it is on
Optuna's strict Pareto front (`pareto`) and on the noise-aware front of configurations over
seeds (`front`, `search.configurations`), its identity (seed, baseline, re-run and
duplicate links), the techniques it trained with, when it ran,
its validation accuracy after each epoch, and every technique's switch and
hyperparameters as `.`-named columns, and, on request, the test accuracy of every trial
with saved weights. Selection always used the validation split; the test set is read only
here.

Every column has a type, declared here or derived from the technique registry and the
recipe's fields, so each format reads back as it was meant: integers as integers, missing
values as missing (pandas' nullable Int64, Float64, boolean and string in Parquet, empty
fields in CSV), times as UTC timestamps, and the per-epoch accuracies as a list (a JSON list
in a CSV field).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from optuna.trial import FrozenTrial, TrialState

from search import failpoints, ledger, progress, weights
from search.errors import UsageError
from search.latency import ATTR, alone_ms
from search.study import StudyConfig
from spaces import Space
from spaces.space import BUDGET_PARAM, STAGE_RATIO, TRAIN_PREFIX
from trainer.atomic import write_atomic
from trainer.data import DeviceData, Splits
from trainer.spec import TrainSpec
from trainer.techniques import REGISTRY
from trainer.train import evaluate

FORMATS = ("csv", "json", "parquet")
# The measurements as columns; how the trial ran (device, threads, the epoch it resumed
# from after an interruption, and the fused group it trained in) follows them in a row.
HOW = (ledger.DEVICE, ledger.THREADS, ledger.RESUMED_FROM_EPOCH, ledger.GROUP)
# Measured values of recipe fields: the row shows them in the field's column, in place of
# the value the configuration asked for.
AS_TRAINED = {ledger.BATCH_SIZE: "train.batch_size"}
MEASURED = tuple(a for a in ledger.RESULT_ATTRS if a not in HOW and a not in AS_TRAINED)
IDENTITY = (*ledger.CARRIED_ATTRS, ledger.RERUN_OF, ledger.DUPLICATE_OF)
# A pruned trial trained only up to its rung: how far, and its validation accuracy there.
HALVING = (ledger.PRUNED_EPOCH, ledger.PARTIAL_ACCURACY)
TECHNIQUES = "techniques"  # the techniques a trial trained with, as every table names them
STARTED, FINISHED = "datetime_start", "datetime_complete"  # Optuna's names, in UTC
TEST_ACCURACY = "test_accuracy"

# Column types: pandas' nullable dtypes, and two kinds written per format.
INT, FLOAT, BOOL, TEXT = "Int64", "Float64", "boolean", "string"
LIST, TIME = "list", "time"  # a list of floats; a UTC timestamp
ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"  # how a time reads in CSV and JSON: ISO 8601, UTC


def _kind_of(value: object, integer: bool = False) -> str:
    """The column type of a registered hyperparameter or recipe field, from its default."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, str):
        return TEXT
    return INT if integer or isinstance(value, int) else FLOAT


def _registered() -> dict[str, str]:
    """The recipe's columns and every registered technique's, typed from their defaults: a
    new technique or recipe field is typed as soon as it exists."""
    train = TrainSpec()
    kinds = {TRAIN_PREFIX + f.name: _kind_of(getattr(train, f.name)) for f in fields(train)}
    for name, technique in REGISTRY.items():
        kinds[f"{name}.enabled"] = BOOL
        kinds.update({f"{name}.{h.name}": _kind_of(h.default, h.integer) for h in technique.hypers})
    return kinds


COLUMNS = {
    "number": INT,
    "state": TEXT,
    "pareto": BOOL,
    "front": BOOL,
    "accuracy": FLOAT,
    ledger.BUDGET: INT,
    "params": INT,
    "flops": INT,
    ledger.CHANNELS: TEXT,
    "latency_ms": FLOAT,
    "latency_iqr_ms": FLOAT,
    "train_seconds": FLOAT,
    "images_per_second": FLOAT,
    "final_loss": FLOAT,
    "accuracy_split": TEXT,
    "latency_ms_alone": FLOAT,
    ledger.DEVICE: TEXT,
    ledger.THREADS: INT,
    ledger.RESUMED_FROM_EPOCH: INT,
    ledger.GROUP: INT,
    ledger.NODE: TEXT,
    ledger.NODE_IP: TEXT,
    ledger.BASELINE: BOOL,
    ledger.SEED: INT,
    ledger.CONFIG: TEXT,
    ledger.RERUN_OF: INT,
    ledger.DUPLICATE_OF: INT,
    ledger.PRUNED_EPOCH: INT,
    ledger.PARTIAL_ACCURACY: FLOAT,
    ledger.EPOCH_ACCURACY: LIST,
    ledger.FAILURE: TEXT,
    ledger.REASON: TEXT,
    TECHNIQUES: TEXT,
    STARTED: TIME,
    FINISHED: TIME,
    TEST_ACCURACY: FLOAT,
    BUDGET_PARAM: INT,
    "model.stages": TEXT,
    STAGE_RATIO: FLOAT,
    **_registered(),
}


def switched_on(columns: dict[str, Any]) -> str:
    """The techniques a trial's columns (`Space.columns`) switch on, `named`."""
    return progress.named(
        k.removesuffix(".enabled") for k, on in columns.items() if k.endswith(".enabled") and on
    )


def _utc(moment: datetime | None) -> str | None:
    """Optuna's local, naive time as ISO 8601 UTC."""
    return None if moment is None else moment.astimezone(UTC).strftime(ISO_UTC)


def pareto_numbers(study: optuna.Study) -> set[int]:
    """The trials on Optuna's strict Pareto front (a duplicate stands for its original)."""
    return {t.number for t in ledger.pareto_front(study)}


def front_numbers(study: optuna.Study, space: Space) -> set[int]:
    """The trials on the noise-aware front: every seed of its configurations."""
    from search import configurations  # scipy: only once a front is made, not for `search -h`

    trials = study.get_trials(deepcopy=False)
    front = configurations.noise_aware_front(trials, space.objectives, space.directions)
    return {n for c in front for n in c.numbers}


def measured(trial: FrozenTrial, objectives: tuple[str, ...]) -> dict[str, Any]:
    """Every measurement of the trial: an objective's told value, else its user attribute."""
    told = dict(zip(objectives, trial.values or (), strict=False))
    return {name: told.get(name, trial.user_attrs.get(name)) for name in MEASURED}


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with each value of its column's type: an objective told as a float (`budget`,
    `params`) back to an integer, an integer hyperparameter value to a float column's."""
    for column, value in row.items():
        kind = COLUMNS.get(column)
        if value is None or kind not in (INT, FLOAT):
            continue
        row[column] = int(value) if kind == INT else float(value)
    return row


def trial_row(
    trial: FrozenTrial,
    space: Space,
    seed: int,
    fronts: tuple[set[int], set[int]],
    alone: dict[str, Any],
) -> dict[str, Any]:
    """The trial's row; `fronts`: the trials on the strict and on the noise-aware front."""
    attrs = trial.user_attrs
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "pareto": trial.number in fronts[0],
        "front": trial.number in fronts[1],
        **measured(trial, space.objectives),
        "accuracy_split": "validation",
        "latency_ms_alone": alone_ms(alone.get(str(trial.number))),
        **{k: attrs.get(k) for k in HOW},
        **{k: attrs.get(k) for k in ledger.WHERE_ATTRS},
        **{k: attrs.get(k) for k in IDENTITY + HALVING},
        ledger.EPOCH_ACCURACY: attrs.get(ledger.EPOCH_ACCURACY),
        "seed": seed,  # the training seed
        "failure": attrs.get(ledger.FAILURE),
        "reason": attrs.get(ledger.REASON),
        TECHNIQUES: None,
        STARTED: _utc(trial.datetime_start),
        FINISHED: _utc(trial.datetime_complete),
    }
    if trial.params or trial.state == TrialState.COMPLETE:  # a queued trial has none yet
        columns = space.columns(trial.params, seed)
        row[TECHNIQUES] = switched_on(columns)
        row.update(columns)
        for attr, column in AS_TRAINED.items():
            if attrs.get(attr) is not None:  # studies before it record the asked
                row[column] = attrs[attr]
    return typed(row)


def rows(
    study: optuna.Study, settings: StudyConfig, *, only_pareto: bool, strict: bool = False
) -> list[dict[str, Any]]:
    """A row per trial; `only_pareto`: only the noise-aware front's, or with `strict` only
    Optuna's strict front's."""
    space = settings.space()
    fronts = pareto_numbers(study), front_numbers(study, space)
    trials = study.get_trials(deepcopy=False)
    if only_pareto:
        trials = [t for t in trials if t.number in fronts[not strict]]
    alone = study.user_attrs.get(ATTR, {})
    return [trial_row(t, space, ledger.seed_of(t, settings.seed), fronts, alone) for t in trials]


def test_accuracy(
    trial: FrozenTrial, settings: StudyConfig, splits: Splits, study_name: str
) -> float:
    """Accuracy of a finished trial's saved weights on the test split, as deployed."""
    model = weights.trained(trial, settings, splits, study_name)
    test = DeviceData(splits.x_test, splits.y_test, splits.mean, splits.std)
    return evaluate(weights.as_deployed(model, trial, settings), test)


def add_test_accuracy(
    table: list[dict[str, Any]], study: optuna.Study, settings: StudyConfig, splits: Splits
) -> list[int]:
    """Fill `test_accuracy` in every row whose trial has saved weights (empty in the others);
    returns the numbers of the trials that trained to the end yet have none here (weights
    on another machine, or removed)."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    missing = []
    for row in table:
        trial = by_number[row["number"]]
        row[TEST_ACCURACY] = None
        if trial.state != TrialState.COMPLETE or ledger.DUPLICATE_OF in trial.user_attrs:
            continue  # trained nothing to the end of its own
        if weights.weights_path(settings, study.study_name, trial.number).is_file():
            row[TEST_ACCURACY] = test_accuracy(trial, settings, splits, study.study_name)
        else:
            missing.append(trial.number)
    return missing


def frame(table: list[dict[str, Any]]) -> pd.DataFrame:
    """`table` as a DataFrame whose columns have their declared types (an undeclared column
    keeps what pandas infers)."""
    data = pd.DataFrame(table)
    for column in data.columns:
        kind = COLUMNS.get(column)
        if kind == TIME:
            data[column] = pd.to_datetime(data[column], format=ISO_UTC, utc=True)
        elif kind == LIST:  # lists as they are: Parquet's list type, `_parquet` below
            continue
        elif kind is not None:
            data[column] = data[column].astype(kind)
    return data


def _parquet(data: pd.DataFrame) -> pa.Table:
    """`data` as an Arrow table with list columns typed, even where every value is missing
    (which Arrow alone would type as null)."""
    arrow = pa.Table.from_pandas(data, preserve_index=False)
    for i, name in enumerate(arrow.column_names):
        if COLUMNS.get(name) == LIST:
            column = arrow.column(i).cast(pa.list_(pa.float64()))
            arrow = arrow.set_column(i, pa.field(name, column.type), column)
    return arrow


def write(table: list[dict[str, Any]], fmt: str, path: Path | None) -> str | None:
    """Write `table` to `path` (atomically), or return it as text when no path is given.
    Parquet is binary and needs a path."""
    if fmt == "parquet":
        if path is None:
            raise UsageError("--format parquet writes a binary file: give it with -o FILE")
        write_atomic(path, lambda partial: pq.write_table(_parquet(frame(table)), partial))
        return None
    if fmt == "csv":
        data = frame(table)
        for column in data.columns:
            if COLUMNS.get(column) == LIST:  # a JSON list in one field
                lists = (row.get(column) for row in table)
                data[column] = pd.Series([None if v is None else json.dumps(v) for v in lists])
        text = data.to_csv(index=False, date_format=ISO_UTC)
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
    """Optuna's strict front as a run prints it with `--strict-front`, a line per trial:
    objectives and the techniques that were on."""
    if not table:
        return "(no finished trials)"
    lines = [
        {
            "trial": row["number"],
            **{o: row[o] for o in objectives},
            "latency_ms_alone": row["latency_ms_alone"],
            TECHNIQUES: row[TECHNIQUES],
        }
        for row in table
    ]
    shown = pd.DataFrame(lines).sort_values(objectives[0], ascending=False)
    counts = {c: "{:,}".format for c in progress.COUNTS if c in shown}
    shown = shown.astype({c: int for c in counts})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", formatters=counts)


def front_summary(study: optuna.Study, settings: StudyConfig) -> str:
    """The noise-aware front as a run prints it, a line per configuration (its trials, one per
    seed): each objective's mean over its seeds ± its noise half-width (the band), with the
    rule and the band stated under it, and how much of Optuna's strict front it leaves out."""
    from search import configurations, front  # scipy: only once a front is made

    space = settings.space()
    trials = study.get_trials(deepcopy=False)
    configs = configurations.noise_aware_front(trials, space.objectives, space.directions)
    if not configs:
        return "(no finished trials)"
    alone = study.user_attrs.get(ATTR, {})
    lines = []
    for config in sorted(
        configs, key=lambda c: c.means[0], reverse=space.directions[0] == "maximize"
    ):
        first = config.trials[0]
        columns = space.columns(first.params, ledger.seed_of(first, settings.seed))
        timed = [alone_ms(alone.get(str(n))) for n in config.numbers]
        lines.append(
            {
                "trials": ", ".join(map(str, config.numbers)),
                "seeds": len(config.trials),
                **{
                    o: banded(o, mean, noise)
                    for o, mean, noise in zip(
                        space.objectives, config.means, config.noise, strict=True
                    )
                },
                "latency_ms_alone": "" if None in timed else f"{sum(timed) / len(timed):.4f}",
                TECHNIQUES: switched_on(columns),
            }
        )
    strict = pareto_numbers(study)
    off = strict - {n for c in configs for n in c.numbers}
    notes = [
        front.RULE,
        "Each value is the mean over the configuration's seeds, ± its noise half-width by that "
        "rule: the band another configuration must clear to beat it (accuracy has none with "
        "one seed).",
        f"Optuna's strict front holds {len(strict)} trial(s), {len(off)} of them not on this "
        "one: --strict-front prints it.",
    ]
    return "\n".join(
        [pd.DataFrame(lines).to_string(index=False), *(textwrap.fill(n, width=100) for n in notes)]
    )


def banded(objective: str, mean: float, noise: float) -> str:
    """`0.8438 ± 0.0120`: an objective's mean and its noise half-width; a count, or a value
    without noise, alone."""
    if objective in progress.COUNTS:
        return f"{round(mean):,}"
    return f"{mean:.4f}" + (f" ± {noise:.4f}" if noise else "")
