"""Fault injection: one study, its driver killed with SIGKILL at six points (data load, Ray
start, mid-trial, between a tell and the next ask, before the final Pareto step, during an
export) and resumed each time. In the end every finished trial is there exactly once, the
target is reached, nothing is RUNNING, and no Ray process outlives its driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import procs
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

TARGET = 4  # room for the kills before it is reached: mid-trial, after a tell


def no_leftovers(tag: str, timeout: float = 45) -> None:
    """Every process the driver started has ended. Without the reaper, Ray's agents outlive
    a killed driver by a minute or more."""
    deadline = time.monotonic() + timeout
    while (left := procs.tagged(tag)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, "processes outlived their driver:\n" + "\n".join(procs.describe(left))


def trained(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Finished trials that trained (a duplicate reuses another trial's result)."""
    return [
        t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    ]


def complete(url: str) -> dict[int, list[float]]:
    study = optuna.load_study(study_name="f", storage=url)
    return {t.number: t.values for t in trained(study.get_trials())}


def test_a_study_survives_kill_9_anywhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    ray_tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths
    base = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    run = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "f"]
    run += ["--storage", url, "--trials", str(TARGET), "--epochs", "2", "--parallel", "2"]
    resume = [sys.executable, "-m", "search.cli", "resume", "f", "--storage", url]
    resume += ["--parallel", "2"]
    kills = 0

    def driver(command: list[str], failpoint: str = "") -> tuple[subprocess.Popen, str]:
        tag = procs.new_tag()
        env = {**base, procs.TAG: tag, "SEARCH_FAILPOINT": failpoint}
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return proc, tag

    def killed_at(command: list[str], failpoint: str) -> None:
        nonlocal kills
        proc, tag = driver(command, failpoint)
        output, _ = proc.communicate(timeout=1200)
        assert proc.returncode == -signal.SIGKILL, f"{failpoint} never reached:\n{output}"
        kills += 1
        no_leftovers(tag)

    killed_at(run, "data")  # before the storage is touched
    killed_at(run, "ray")  # Ray started, study not created yet

    proc, tag = driver(run)  # mid-trial: killed from outside while trials train
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, "no trial started"
        try:
            study = optuna.load_study(study_name="f", storage=url)
        except KeyError:
            study = None
        if study and study.get_trials(states=(TrialState.RUNNING,)):
            break
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    kills += 1
    no_leftovers(tag)
    before = complete(url)

    killed_at(resume, "told")  # between a tell and the next ask
    after = complete(url)
    assert len(after) == len(before) + 1 and before.items() <= after.items()
    killed_at(resume, "pareto")  # target reached, before the final Pareto step
    before, after = after, complete(url)
    assert len(after) == TARGET and before.items() <= after.items()
    before = after
    front = tmp_path / "front.csv"
    export = [sys.executable, "-m", "search.cli", "export", "f", "--storage", url]
    killed_at([*export, "-o", str(front)], "export")
    assert not front.exists()  # never half-written

    proc, tag = driver(resume)
    output, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, output
    no_leftovers(tag)
    proc, tag = driver([*export, "-o", str(front)])
    assert proc.wait(timeout=300) == 0 and front.is_file()

    study = optuna.load_study(study_name="f", storage=url)
    trials = study.get_trials()
    assert kills == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert [t.number for t in trials] == list(range(len(trials)))
    finished = trained(trials)
    assert len(finished) == TARGET
    assert complete(url) == before  # nothing finished was lost or trained again
    keys = Counter(json.dumps([t.params, t.user_attrs.get("seed")]) for t in finished)
    assert max(keys.values()) == 1, "a finished configuration was trained twice"
    reruns = {t.user_attrs.get("rerun_of") for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL:
            assert trial.user_attrs["failure"] in ("interrupted", "duplicate", "over_budget"), trial
        if trial.user_attrs.get("failure") == "interrupted":
            assert trial.number in reruns, f"interrupted trial {trial.number} never re-run"
