"""`search status`: read from the storage alone, writes nothing; names what each running
trial trains, tells a dead driver's trials from running ones, and reports the best
configuration over its seeds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna

from search import ledger, status
from search import study as studies
from search.storage import open_storage
from search.study import StudyConfig
from spaces import Space, load


def new_study(tmp_path: Path, space: Space) -> tuple[optuna.Study, StudyConfig]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    config = StudyConfig(space.source, 6, 0, None, 1, str(tmp_path / "w"), grace_period=60.0)
    return studies.create_or_load(open_storage(url), "st", space, config, queue=[]), config


def start(study: optuna.Study, space: Space, techniques: tuple[str, ...], **attrs) -> optuna.Trial:
    """A trial of the configuration with `techniques` on, asked as the searcher asks."""
    study.enqueue_trial(space.default_params(techniques), user_attrs=attrs)
    trial = study.ask()
    space.suggest(trial)
    return trial


def run_by(trial: optuna.Trial, driver: str, beat_age: float) -> None:
    trial.set_user_attr(ledger.DRIVER, driver)
    trial.set_user_attr(ledger.HEARTBEAT, time.time() - beat_age)


def test_status_shows_progress_running_failures_best_and_eta(search, tmp_path: Path) -> None:
    space = load("quickstart")
    study, _ = new_study(tmp_path, space)
    for techniques, accuracy in ((("se",), 0.5), (("blurpool",), 0.8)):
        trial = start(study, space, techniques)
        time.sleep(0.05)  # a measurable duration for the ETA
        study.tell(trial, [accuracy, 1990, 0.3])
    for failure in (ledger.DIVERGED, ledger.INTERRUPTED, ledger.INTERRUPTED):
        ledger.fail(study, study.ask().number, failure, "test")
    live = start(study, space, ("mixup", "cutout"), seed=1)
    run_by(live, "gpu-box-1:4242", 5)
    dead = start(study, space, ("gap",))
    run_by(dead, "gpu-box-2:77", 600)
    before = (tmp_path / "s.db").stat().st_mtime_ns

    out = search("status", "st", "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "study 'st' (quickstart): 3/6 trials done, 1 running, 0 queued"
    assert (
        f"running trial {live.number} (cutout + mixup, 2,000 params, seed 1): host gpu-box-1, "
        "driver gpu-box-1:4242, heartbeat "
    ) in out.stdout
    assert f"running trial {dead.number} (gap, 2,000 params, seed 0): host gpu-box-2" in out.stdout
    assert "ago (stale: dead after 60s, not counted)" in out.stdout
    assert out.stdout.count("not counted") == 1
    assert "failures: diverged 1, interrupted 2" in out.stdout
    assert (
        "best so far: trial 1 (blurpool, 2,000 params), accuracy 0.8, budget 1,990, " in out.stdout
    )
    assert "ETA: about" in out.stdout and "3 trials left" in out.stdout
    assert "nan" not in out.stdout
    assert (tmp_path / "s.db").stat().st_mtime_ns == before  # read only


def test_status_names_design_labels_and_the_best_mean_over_seeds(tmp_path: Path) -> None:
    space = load("quickstart")
    study, config = new_study(tmp_path, space)
    results = {"+blurpool": (0.95, 0.70, 0.70), "+se": (0.80, 0.82, 0.84)}  # a lucky seed
    for label, accuracies in results.items():
        technique = label.removeprefix("+")
        for seed, accuracy in enumerate(accuracies):
            trial = start(study, space, (technique,), config=label, seed=seed)
            study.tell(trial, [accuracy, 2000, 0.3])
    running = start(study, space, ("mixup",), config="+mixup", seed=2)
    run_by(running, "gpu-box-1:4242", 1)

    report = status.report(study, config)
    assert f"running trial {running.number} (+mixup, seed 2): host gpu-box-1" in report
    assert (
        "best so far: +se, mean of 3 seeds: accuracy 0.82, budget 2,000, latency_ms 0.3 "
        "(trials 3, 4, 5)"
    ) in report.splitlines()


def test_a_trial_whose_driver_on_this_host_is_gone_is_marked_driver_dead(tmp_path: Path) -> None:
    """A real dead pid: a process started and reaped, on this host. Its trial's heartbeat is
    fresh (a `kill -9` a moment ago), so only the process tells it is dead."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    space = load("quickstart")
    study, config = new_study(tmp_path, space)
    orphan = start(study, space, ("se",))
    run_by(orphan, f"{socket.gethostname()}:{gone.pid}", 2)
    ours = start(study, space, ("gap",))
    run_by(ours, f"{socket.gethostname()}:{os.getpid()}", 2)

    lines = status.report(study, config).splitlines()
    assert lines[0] == "study 'st' (quickstart): 0/6 trials done, 1 running, 0 queued"
    (dead,) = [line for line in lines if f"running trial {orphan.number} " in line]
    assert dead.endswith("ago (driver dead: its process on this host is gone, not counted)")
    (alive,) = [line for line in lines if f"running trial {ours.number} " in line]
    assert alive.endswith("ago")  # this process: alive, and its heartbeat fresh


def test_status_of_a_missing_storage_or_study_is_a_short_error(search, tmp_path: Path) -> None:
    out = search("status", "nope")
    assert out.returncode == 2 and "holds no studies" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # no runs/, no database created

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_storage(url)
    out = search("status", "nope", "--storage", url)
    assert out.returncode == 2 and "no study named 'nope'" in out.stderr
