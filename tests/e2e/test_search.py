"""End to end through real Ray Tune and real Optuna storage: `search run`, export, failures,
and an interrupted study resumed. No mocks: these are the commands users run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from search import ledger, progress
from spaces import load

pytestmark = pytest.mark.slow

FAST = ["--epochs", "3", "--parallel", "2"]


def storage_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def test_quickstart_runs_and_exports_what_the_study_holds(search, tmp_path: Path) -> None:
    url = storage_of(tmp_path)
    run = search("run", "quickstart", "--trials", "4", "--study", "qs", "--storage", url, *FAST)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "[4/4]" in run.stdout and "Pareto front of 'qs'" in run.stdout

    study = optuna.load_study(study_name="qs", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    baseline = study.trials[0]
    assert baseline.user_attrs["baseline"] is True
    assert baseline.params["depthwise.enabled"] and baseline.params["gap.enabled"]
    assert not baseline.params["mixup.enabled"]
    for trial in complete:
        accuracy, budget, latency = trial.values
        assert 0.1 < accuracy <= 1.0  # 10 classes: better than chance after 3 epochs
        assert budget == trial.params["budget.params"] and budget in (400, 1000, 2000)
        assert 0.98 * budget <= trial.user_attrs["params"] <= budget  # scaled to its level
        assert latency > 0
        weights = tmp_path / "runs" / "weights" / "qs" / f"trial_{trial.number}.pt"
        assert weights.is_file()

    exported = search("export", "qs", "--storage", url)
    assert exported.returncode == 0, exported.stderr
    table = pd.read_csv(StringIO(exported.stdout))
    assert list(table["number"]) == [t.number for t in study.trials]
    assert list(table["state"]) == [t.state.name for t in study.trials]
    space = load("quickstart")
    for trial, (_, row) in zip(study.trials, table.iterrows(), strict=True):
        if trial.state != TrialState.COMPLETE:  # a level too small, or a running duplicate
            assert row["failure"] == trial.user_attrs["failure"] in ("over_budget", "duplicate")
            continue
        assert row["accuracy"] == pytest.approx(trial.values[0])
        assert row["budget"] == trial.values[1]
        assert row["params"] == trial.user_attrs["params"]
        assert row["latency_ms"] == pytest.approx(trial.values[2])
        assert row["accuracy_split"] == "validation"
        for name, value in trial.params.items():
            assert row[name] == pytest.approx(value), name
        for name in space.techniques:
            assert f"{name}.enabled" in table.columns

    out = tmp_path / "front.json"
    front = search(
        "export", "qs", "--storage", url, "--pareto", "--strict-front", "--format", "json",
        "-o", str(out), "--test",
    )  # fmt: skip
    assert front.returncode == 0, front.stderr
    rows = json.loads(out.read_text())
    assert {r["number"] for r in rows} == {t.number for t in study.best_trials}
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["latency_ms_alone"] > 0  # re-timed alone after the run

    parquet = tmp_path / "all.parquet"
    exported = search("export", "qs", "--storage", url, "--format", "parquet", "-o", str(parquet))
    assert exported.returncode == 0, exported.stderr
    assert list(pd.read_parquet(parquet)["number"]) == list(table["number"])

    report = search("report", "qs", "--storage", url, "-o", str(tmp_path / "rep"), "--test")
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "## Pareto front" in markdown and "## Importance" in markdown
    assert "re-measured alone" in markdown  # the front was timed alone: the report says so
    assert "test accuracy %" in markdown and "Test set: used only" in markdown
    provenance = study.user_attrs["provenance"]
    assert len(provenance["split"]) == 16 and provenance["split"] in markdown


def test_diverging_trials_are_recorded_as_failed_and_the_study_goes_on(
    search, tmp_path: Path
) -> None:
    space = tmp_path / "hot.yaml"
    space.write_text(
        """name: hot
description: a learning rate no network survives
data: {dataset: digits, val_fraction: 0.2}
model: {stages: [{channels: 8}, {channels: 16}]}
train: {epochs: 2, lr: 10.0, momentum: 0.99, weight_decay: 0.1, batch_size: 64, schedule: constant}
search: {trials: 2}
techniques: {blurpool: search}
"""
    )
    url = storage_of(tmp_path)
    run = search("run", str(space), "--study", "hot", "--storage", url)
    assert run.returncode == 0, run.stderr + run.stdout
    trials = optuna.load_study(study_name="hot", storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for trial in trials:
        assert trial.user_attrs["failure"] == "diverged"
        assert "nan" in trial.user_attrs["reason"]
    assert "failed 2" in run.stdout


def test_a_study_stopped_by_sigterm_resumes_to_its_target_as_it_ran(tmp_path: Path) -> None:
    """Interrupted, then a bare `search resume`: the rest trains with the threads per trial
    and the parallelism the study started with, never a mix (issue 18)."""
    url = storage_of(tmp_path)
    command = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "cut"]
    proc = subprocess.Popen(
        [*command, "--trials", "6", "--storage", url, *FAST],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    finished_before: dict[int, list[float]] = {}
    while time.monotonic() < deadline and len(finished_before) < 2:
        time.sleep(1)
        try:
            study = optuna.load_study(study_name="cut", storage=url)
        except KeyError:
            continue
        finished_before = {
            t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))
        }
    assert len(finished_before) >= 2, "no trial finished in time"
    proc.send_signal(signal.SIGTERM)  # as a scheduler or `timeout` stops it; it becomes Ctrl-C
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "search resume cut" in output

    study = optuna.load_study(study_name="cut", storage=url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    counted = len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert counted < 6, "the run finished before it could be interrupted"

    recorded = study.user_attrs["execution"]
    assert (recorded["parallel"], recorded["device"]) == (2, "cpu")
    trials_before = len(study.trials)

    resume = [sys.executable, "-m", "search.cli", "resume", "cut", "--storage", url]
    moved = subprocess.run(
        [*resume, "--gpus-per-trial", "0.5"], cwd=tmp_path, capture_output=True, text=True
    )
    assert moved.returncode == 2 and "Traceback" not in moved.stderr
    assert moved.stderr.count("\n") == 1 and "ran its trials 2 at once" in moved.stderr
    assert len(optuna.load_study(study_name="cut", storage=url).trials) == trials_before

    resumed = subprocess.run(resume, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 at once" in resumed.stdout
    study = optuna.load_study(study_name="cut", storage=url)
    complete = {t.number: t.values for t in study.trials if ledger.counted(t)}
    assert len(complete) == 6 and len(set(trained_keys(study))) == 6
    for number, values in finished_before.items():
        assert complete[number] == values  # kept, not retrained
    reruns = {t.user_attrs.get("rerun_of"): t for t in study.trials}
    for trial in study.get_trials(states=(TrialState.FAIL,)):
        if trial.user_attrs["failure"] == ledger.INTERRUPTED:  # trained again, exactly
            assert reruns[trial.number].params == trial.params
        else:  # never trained: a duplicate, or a proposal over the smallest budget level
            assert trial.user_attrs["failure"] in (ledger.DUPLICATE, ledger.OVER_BUDGET)
    # Resumed trials trained with the study's stored settings (3 epochs), not the preset's,
    # and every trial with the threads of its first run.
    assert study.user_attrs["epochs"] == 3
    threads = {t.user_attrs["threads"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert threads == {recorded["threads"]}


def trained_keys(study: optuna.Study) -> list[str]:
    """The duplicate key of every trial that trained a configuration to its end."""
    return [
        ledger.config_key(t.params, t.user_attrs["seed"])
        for t in study.get_trials(deepcopy=False)
        if ledger.counted(t)
    ]


def test_progress_line_follows_the_declared_objectives() -> None:
    """A space may declare any subset of the objectives; progress must not assume three."""
    trial = optuna.trial.create_trial(params={}, distributions={}, values=[0.91, 0.25])
    line = progress.outcome(trial, ("accuracy", "latency_ms"))
    assert line == "done: accuracy 0.91, latency_ms 0.25"
