"""A study stored by an earlier version of the tool exports, reports and resumes as it did.

`tests/fixtures/legacy_study/studies.db` holds two quickstart studies made at commit 9043b70
(1 epoch, 2 trials at once on 2 CPU cores, seed 0):

- `legacy-oat`: `search ablate quickstart --design oat --seeds 2`, 16 trials; its last trial
  (15, `+label_smoothing`, seed 1) was then marked as a driver killed mid-trial leaves it
  (FAIL, `failure` = interrupted, no results, no weights);
- `legacy-run`: `search run quickstart --trials 5`, one trial refused as over its budget, with
  the weights of its trained trials under `weights/`.

`expected/` holds what that version printed for the commands below. Changing what a command
prints is then a visible decision: regenerate the files with `SEARCH_REGENERATE_FIXTURES=1`
and commit them with the change that explains why.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_study"
EXPECTED = FIXTURE / "expected"
REGENERATE = os.environ.get("SEARCH_REGENERATE_FIXTURES") == "1"

# What a re-run measures afresh (time, machine, process): not part of what a trial IS.
VOLATILE = [
    "latency_ms",
    "latency_iqr_ms",
    "latency_ms_alone",
    "train_seconds",
    "images_per_second",
    "node",
    "node_ip",
    "datetime_start",
    "datetime_complete",
]


@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A copy of the stored studies whose weights folder is the copy's, as its storage URL.
    Optuna stored the trials' times in the local zone of the machine that ran them; the
    export writes them in UTC, read here as UTC."""
    monkeypatch.setenv("TZ", "UTC")
    shutil.copy(FIXTURE / "studies.db", tmp_path / "studies.db")
    shutil.copytree(FIXTURE / "weights", tmp_path / "weights")
    with sqlite3.connect(tmp_path / "studies.db") as db:
        db.execute(
            "UPDATE study_user_attributes SET value_json = ? WHERE key = 'weights_dir'",
            (f'"{tmp_path / "weights"}"',),
        )
    return f"sqlite:///{tmp_path / 'studies.db'}"


def check(name: str, text: str) -> None:
    """`text` is what the stored version printed, as kept in expected/NAME."""
    path = EXPECTED / name
    if REGENERATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from what the stored version printed"


def without_volatile(csv: str) -> str:
    """An exported CSV without the columns a re-run measures afresh, each field as it was."""
    table = pd.read_csv(StringIO(csv), dtype=str, keep_default_na=False)
    return table.drop(columns=VOLATILE).to_csv(index=False)


def without_provenance(report: str) -> str:
    """A report up to its provenance section, which names this run's code and machine."""
    return report.split("## Provenance")[0]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_stored_study_exports_as_it_did(search, legacy: str, fmt: str) -> None:
    for study in ("legacy-oat", "legacy-run"):
        out = search("export", study, "--storage", legacy, "--format", fmt)
        assert out.returncode == 0, out.stderr
        check(f"export-{study}.{fmt}", out.stdout)


def test_a_stored_study_exports_test_accuracy_from_its_weights(search, legacy: str) -> None:
    out = search("export", "legacy-run", "--storage", legacy, "--test", "--pareto")
    assert out.returncode == 0, out.stderr
    check("export-legacy-run-test.csv", without_volatile(out.stdout))


def test_export_test_fills_every_trial_with_weights_and_names_those_without(
    search, legacy: str, tmp_path: Path
) -> None:
    """Without --pareto, every trial that trained to the end gets its test accuracy; the
    front's figures are those of `--test --pareto`; a missing weights file is named."""
    out = search("export", "legacy-run", "--storage", legacy, "--test")
    assert out.returncode == 0, out.stderr
    table = pd.read_csv(StringIO(out.stdout)).set_index("number")
    trained = table["state"] == "COMPLETE"
    assert list(table.index[trained]) == [0, 2, 3, 4, 5]
    assert table.loc[trained, "test_accuracy"].between(0, 1).all()
    assert table.loc[~trained, "test_accuracy"].isna().all()  # trial 1: over its budget
    front = pd.read_csv(
        StringIO(search("export", "legacy-run", "--storage", legacy, "--test", "--pareto").stdout)
    )
    for _, row in front.iterrows():
        assert table.loc[row["number"], "test_accuracy"] == row["test_accuracy"]

    (tmp_path / "weights" / "legacy-run" / "trial_4.pt").unlink()
    out = search("export", "legacy-run", "--storage", legacy, "--test")
    assert out.returncode == 0, out.stderr
    assert "no saved weights for trials 4 under" in out.stderr
    assert pd.read_csv(StringIO(out.stdout)).set_index("number")["test_accuracy"].notna().sum() == 4


@pytest.mark.parametrize("study", ["legacy-oat", "legacy-run"])
def test_a_stored_study_reports_as_it_did(search, legacy: str, tmp_path: Path, study) -> None:
    out = search("report", study, "--storage", legacy, "-o", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    check(f"report-{study}.md", without_provenance((tmp_path / "report/report.md").read_text()))


@pytest.mark.slow
def test_a_stored_study_resumes_its_interrupted_trial_as_it_did(search, legacy: str) -> None:
    """The interrupted trial trains again with its parameters and seed, and the study's
    rows are those the stored version produced by the same resume."""
    out = search("resume", "legacy-oat", "--storage", legacy, "--parallel", "2")
    assert out.returncode == 0, out.stderr + out.stdout
    assert "1 interrupted trial(s) queued to train again" in out.stdout
    exported = search("export", "legacy-oat", "--storage", legacy)
    table = pd.read_csv(StringIO(exported.stdout))
    rerun = table[table["rerun_of"] == 15]
    assert len(rerun) == 1 and rerun["state"].item() == "COMPLETE"
    assert rerun["config"].item() == "+label_smoothing" and rerun["seed"].item() == 1
    check("resumed-legacy-oat.csv", without_volatile(exported.stdout))
    status = search("status", "legacy-oat", "--storage", legacy)
    assert "failures: interrupted, trained again 1" in status.stdout, status.stdout
