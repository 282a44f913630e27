"""Two drivers on one study in a real PostgreSQL server, at the same time, each with its own
Ray: every trial recorded once, no trial number twice, no configuration trained twice, the
target reached exactly. The password travels in $SEARCH_STORAGE and is never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

TARGET = 6


def test_drivers_opening_an_empty_database_at_once_all_get_the_storage(
    postgres_url: str,
) -> None:
    """The first drivers on a new database race to create Optuna's tables; the losers'
    CREATE fails on a name just taken, and they must open the tables, not exit."""
    env = {**os.environ, "SEARCH_STORAGE": postgres_url}
    code = (  # imported first, so that all six open at the same instant
        "import sys, time; from search.storage import open_storage; "
        "time.sleep(float(sys.argv[1]) - time.time()); open_storage(None)"
    )
    at = str(time.time() + 8)
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", code, at], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=300)[1] for p in openers]
    assert [p.returncode for p in openers] == [0] * 6, errors


def test_two_drivers_share_one_postgres_study(postgres_url: str, tmp_path: Path) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    env = {**os.environ, "SEARCH_STORAGE": postgres_url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "shared"]
    command += ["--trials", str(TARGET), "--epochs", "2", "--parallel", "1"]
    drivers = []
    for i in range(2):
        cwd = tmp_path / f"host{i}"  # each driver its own runs/ (weights), as on two hosts
        cwd.mkdir()
        drivers.append(
            subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    time.sleep(2)
    for driver in drivers:  # the password is in no process list
        assert password not in Path(f"/proc/{driver.pid}/cmdline").read_text()
    outputs = [d.communicate(timeout=1200)[0] for d in drivers]
    for driver, output in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, output
        assert password not in output

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), "a trial number was given twice"
    assert numbers == list(range(len(trials)))
    complete = [
        t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    ]
    assert len(complete) == TARGET, [t.state for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in trials:
        assert trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING)
        if trial.state == TrialState.FAIL:  # nothing trained failed here
            assert trial.user_attrs["failure"] in ("interrupted", "duplicate", "over_budget"), trial
    drivers_used = {t.user_attrs["driver"] for t in complete}
    assert len(drivers_used) == 2, "one driver did all the work"
    configurations = Counter(json.dumps(t.params, sort_keys=True) for t in complete)
    assert max(configurations.values()) == 1, "a configuration was trained twice"
    assert sum(t.user_attrs.get("baseline", False) for t in trials) == 1

    status = subprocess.run(
        [sys.executable, "-m", "search.cli", "status", "shared"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr
    assert f"{TARGET}/{TARGET} trials done" in status.stdout
    assert password not in status.stdout + status.stderr


def test_a_bad_password_is_one_short_message_without_it(postgres_url: str, tmp_path) -> None:
    password = postgres_url.split(":")[2].split("@")[0] + "-wrong"
    wrong = postgres_url.replace(password.removesuffix("-wrong"), password)
    out = subprocess.run(
        [sys.executable, "-m", "search.cli", "status", "any", "--storage", wrong],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "cannot open storage" in out.stderr and "***" in out.stderr
    assert password not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_a_dead_remote_drivers_trials_are_taken_over_after_the_grace_period(
    postgres_url: str, tmp_path: Path
) -> None:
    """Driver A runs as host `remote-a` (its own UTS namespace: this host cannot check its
    PID) and is killed mid-trial. Driver B, on this host, must not count A's trial once its
    heartbeat is older than the grace period, record it as interrupted, and still reach the
    target exactly, instead of stopping short."""
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a UTS namespace here (unshare --uts needs root)")
    env = {**os.environ, "SEARCH_STORAGE": postgres_url, "PYTHONUNBUFFERED": "1"}
    run = [sys.executable, "-m", "search.cli", "run", "quickstart", "--study", "remote"]
    run += ["--trials", "3", "--epochs", "2", "--parallel", "1", "--grace-period", "20"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    remote = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname remote-a && exec "$@"', "sh", *run],
        cwd=tmp_path / "a",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while True:
        assert remote.poll() is None and time.monotonic() < deadline, "no trial started"
        try:
            study = optuna.load_study(study_name="remote", storage=postgres_url)
            mine = study.get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            mine = []
        if mine and "planned_params" in mine[0].user_attrs:  # handed to Ray: training
            break
        time.sleep(0.5)
    assert mine[0].user_attrs["driver"].startswith("remote-a:")
    remote.kill()
    remote.communicate(timeout=60)

    local = subprocess.run(
        run, cwd=tmp_path / "b", env=env, capture_output=True, text=True, timeout=1200
    )
    assert local.returncode == 0, local.stdout + local.stderr
    trials = optuna.load_study(study_name="remote", storage=postgres_url).get_trials()
    dead = trials[mine[0].number]
    assert dead.state == TrialState.FAIL and dead.user_attrs["failure"] == "interrupted"
    assert "remote-a" in dead.user_attrs["reason"] and "heartbeat" in dead.user_attrs["reason"]
    trained = [
        t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs
    ]
    assert len(trained) == 3
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    rerun = [t for t in trials if t.user_attrs.get("rerun_of") == dead.number]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE  # its parameters, again
    assert dead.params.items() <= rerun[0].params.items()
