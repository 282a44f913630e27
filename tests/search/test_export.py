"""`search export`: every format typed as the columns declare (integers as integers, missing
values as missing, times in UTC, per-epoch accuracies as lists), the three formats agreeing
row for row, and the techniques named as the report names them.

The study is real Optuna storage written as `search run` writes it (test_report.py's
`make_study`), exported by the real command.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from test_report import make_study, metrics

from search import cli, export, progress
from search.export import COLUMNS, FINISHED, FLOAT, INT, LIST, STARTED, TECHNIQUES, TIME
from spaces import load
from trainer.techniques import REGISTRY

TRAINED = 6


def quickstart_study(url: str) -> optuna.Study:
    """Six trained quickstart trials with their per-epoch accuracies, one interrupted trial
    and one queued one: every kind of missing value."""
    space = load("quickstart")
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trials = []
    for i in range(TRAINED):
        params = space.default_params(space.suggest(sampler.ask()).techniques)
        accuracy = 0.8 + 0.01 * i
        epochs = [round(accuracy - 0.1, 3), round(accuracy - 0.05, 3), accuracy]
        trials.append(
            (params, {"seed": 0}, metrics(accuracy, 1980, budget=2000, epoch_accuracy=epochs))
        )
    study = make_study(url, "qs", "quickstart", trials)
    first = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params=first.params,
            distributions=first.distributions,
            user_attrs={"failure": "interrupted", "reason": "Ctrl-C", "seed": 0},
        )
    )
    study.enqueue_trial(space.baseline_params(), user_attrs={"seed": 1})
    return study


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The study written and exported in every format, by the command (in this process:
    export starts no Ray), nine hours east of UTC: Optuna records local times."""
    folder = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{folder / 's.db'}"
    paths = {fmt: folder / f"t.{fmt}" for fmt in export.FORMATS}
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        quickstart_study(url)
        for fmt, path in paths.items():
            args = ["export", "qs", "--storage", url, "--format", fmt, "-o", str(path)]
            assert cli.main(args) == 0
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()
    return paths


def test_parquet_columns_have_their_declared_types(exported: dict[str, Path]) -> None:
    table = pd.read_parquet(exported["parquet"])
    assert len(table) == TRAINED + 2
    assert all(c in COLUMNS for c in table.columns), "every column declares its type"
    for column in table.columns:
        kind = COLUMNS[column]
        if kind == TIME:
            assert str(table[column].dtype) == "datetime64[us, UTC]", column
        elif kind == LIST:
            assert table[column].dtype == object, column
        else:
            assert table[column].dtype == kind, column
    for column in ("params", "budget", "threads", "seed", "depthwise.kernel", "blurpool.size"):
        assert table[column].dtype == "Int64", column
    for column in ("duplicate_of", "pruned_epoch", "rerun_of"):  # all missing, still typed
        assert table[column].dtype == "Int64" and table[column].isna().all(), column
    assert table["partial_accuracy"].dtype == "Float64"
    trained = table[table["state"] == "COMPLETE"]
    assert [list(v) for v in trained["epoch_accuracy"]] == [
        [round(0.7 + 0.01 * i, 3), round(0.75 + 0.01 * i, 3), 0.8 + 0.01 * i]
        for i in range(TRAINED)
    ]
    queued = table[table["state"] == "WAITING"].squeeze()
    assert pd.isna(queued[STARTED]) and pd.isna(queued[TECHNIQUES])
    now = datetime.now(UTC)
    for moment in trained[STARTED].tolist() + trained[FINISHED].tolist():
        assert now - timedelta(minutes=5) < moment <= now  # UTC, not Tokyo's local time


def test_csv_writes_integers_without_a_decimal_and_reads_back_as_the_parquet(
    exported: dict[str, Path],
) -> None:
    text = pd.read_csv(exported["csv"], dtype=str, keep_default_na=False)
    for column, kind in COLUMNS.items():
        if kind == INT and column in text:
            assert all(v == "" or v.lstrip("-").isdigit() for v in text[column]), column
    assert all(v == "" or v.endswith("Z") for v in text[STARTED])  # ISO 8601, UTC
    declared = {c: k for c, k in COLUMNS.items() if k not in (LIST, TIME)}
    csv = pd.read_csv(exported["csv"], dtype=declared, parse_dates=[STARTED, FINISHED])
    csv["epoch_accuracy"] = [
        json.loads(v) if isinstance(v, str) else None for v in csv["epoch_accuracy"]
    ]
    parquet = pd.read_parquet(exported["parquet"])
    parquet["epoch_accuracy"] = [None if v is None else list(v) for v in parquet["epoch_accuracy"]]
    for column in (STARTED, FINISHED):  # CSV keeps microseconds, as the Parquet does
        csv[column] = csv[column].astype(parquet[column].dtype)
    pd.testing.assert_frame_equal(csv, parquet)


def test_json_rows_hold_typed_values(exported: dict[str, Path]) -> None:
    rows = json.loads(exported["json"].read_text())
    first = rows[0]
    assert isinstance(first["params"], int) and isinstance(first["budget"], int)
    assert isinstance(first["threads"], int) and isinstance(first["train.batch_size"], int)
    depthwise = next(r for r in rows if r["depthwise.enabled"])
    assert isinstance(depthwise["depthwise.kernel"], int)
    assert isinstance(first["accuracy"], float) and isinstance(
        first["cutout.p"], (float, type(None))
    )
    assert first["epoch_accuracy"] == [0.7, 0.75, 0.8]
    assert datetime.strptime(first[STARTED], export.ISO_UTC) < datetime.strptime(
        first[FINISHED], export.ISO_UTC
    )
    interrupted = next(r for r in rows if r["state"] == "FAIL")
    assert interrupted["epoch_accuracy"] is None and interrupted[FINISHED] is not None


def test_the_techniques_column_names_them_as_the_report_does(exported: dict[str, Path]) -> None:
    rows = json.loads(exported["json"].read_text())
    for row in rows:
        if row["state"] == "WAITING":
            assert row[TECHNIQUES] is None  # no parameters drawn yet
            continue
        on = [n for n in REGISTRY if row.get(f"{n}.enabled") is True]
        assert row[TECHNIQUES] == (" + ".join(on) or "(none)") == progress.named(reversed(on))
    assert {r[TECHNIQUES] for r in rows if r[TECHNIQUES]} != {"(none)"}  # some have some


@pytest.mark.parametrize("value", [np.int64(3), 3.0])
def test_a_count_told_as_a_float_is_exported_as_an_integer(value: object) -> None:
    row = export.typed({"params": value, "accuracy": 1, "cutout.size": 4.0, "state": "x"})
    assert row == {"params": 3, "accuracy": 1.0, "cutout.size": 4, "state": "x"}
    assert type(row["params"]) is int and type(row["accuracy"]) is float
    assert COLUMNS["cutout.size"] == INT and COLUMNS["mixup.alpha"] == FLOAT
