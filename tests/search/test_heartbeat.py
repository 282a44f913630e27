"""Heartbeats across hosts, on real Optuna storages (SQLite and a journal file): a trial
whose driver stopped beating is not counted and is failed as interrupted by any driver;
a live driver's trials are left alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import heartbeat, ledger
from search import study as studies
from search.errors import UsageError, mask_url
from search.storage import STORAGE_ENV, open_storage
from search.study import StudyConfig
from spaces import load

GRACE = 30.0


def open_study(tmp_path: Path, kind: str) -> optuna.Study:
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(tmp_path / "s.journal")
    space = load("quickstart")
    config = StudyConfig(
        space_source=space.source,
        trials=3,
        seed=0,
        data_dir=None,
        epochs=1,
        weights_dir=str(tmp_path / "w"),
        grace_period=GRACE,
    )
    return studies.create_or_load(open_storage(url), "hb", space, config)


def running_trial(study: optuna.Study, driver: str, beat: float | None) -> int:
    trial = study.ask()
    trial.set_user_attr("driver", driver)
    if beat is not None:
        trial.set_user_attr(ledger.HEARTBEAT, beat)
    return trial.number


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_remote_drivers_trial_is_not_counted_and_is_failed(
    tmp_path: Path, kind: str
) -> None:
    study = open_study(tmp_path, kind)
    now = time.time()
    dead = running_trial(study, "other-host:4242", now - GRACE - 5)
    alive = running_trial(study, "other-host:4343", now - 1)
    assert ledger.progress(study, GRACE) == (0, 1)  # the stale one is not running

    assert ledger.fail_orphans(study, GRACE) == 1
    trials = study.get_trials(deepcopy=False)
    assert trials[dead].state == TrialState.FAIL
    assert trials[dead].user_attrs["failure"] == ledger.INTERRUPTED
    assert "other-host" in trials[dead].user_attrs["reason"]
    assert "heartbeat" in trials[dead].user_attrs["reason"]
    assert trials[alive].state == TrialState.RUNNING
    assert not ledger.counted(trials[dead])  # interrupted trials do not count


def test_a_trial_never_stamped_ages_from_its_start(tmp_path: Path) -> None:
    """Trials from before heartbeats existed: their start is the last sign of life."""
    study = open_study(tmp_path, "sqlite")
    number = running_trial(study, "other-host:1", None)
    trial = study.get_trials(deepcopy=False)[number]
    assert ledger.age(trial) < GRACE and ledger.is_live(trial, GRACE)
    assert not ledger.is_live(trial, GRACE, now=time.time() + GRACE + 1)


def test_a_dead_driver_on_this_host_is_failed_at_once(tmp_path: Path) -> None:
    import socket

    study = open_study(tmp_path, "sqlite")
    number = running_trial(study, f"{socket.gethostname()}:999999999", time.time())
    assert ledger.fail_orphans(study, GRACE) == 1
    assert study.get_trials(deepcopy=False)[number].state == TrialState.FAIL


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_heartbeat_thread_stamps_live_trials_and_reaps(tmp_path: Path, kind: str) -> None:
    study = open_study(tmp_path, kind)
    trial = study.ask()
    reaped = threading.Event()
    beat = heartbeat.Heartbeat(study._storage, 0.2, lambda: [trial._trial_id], reaped.set)
    with beat:
        deadline = time.monotonic() + 30
        while ledger.HEARTBEAT not in study.trials[trial.number].user_attrs:
            assert time.monotonic() < deadline, "no heartbeat recorded"
            time.sleep(0.05)
        assert reaped.wait(30)
    first = study.trials[trial.number].user_attrs[ledger.HEARTBEAT]
    study.tell(trial, [0.5, 1000, 1.0])
    ledger.stamp(study._storage, [trial._trial_id])  # finished meanwhile: skipped, no error
    assert study.trials[trial.number].user_attrs[ledger.HEARTBEAT] == first


def test_a_late_result_never_overwrites_a_trial_failed_meanwhile(tmp_path: Path) -> None:
    study = open_study(tmp_path, "sqlite")
    number = running_trial(study, "other-host:1", time.time())
    ledger.fail(study, number, ledger.INTERRUPTED, "judged dead")
    ledger.fail(study, number, ledger.ERROR, "a late second opinion")
    assert study.trials[number].user_attrs["failure"] == ledger.INTERRUPTED


def test_passwords_are_masked() -> None:
    url = "postgresql+psycopg://ana:s3cr%40t@db.example:5432/studies"
    assert mask_url(f"cannot open {url!r}") == (
        "cannot open 'postgresql+psycopg://ana:***@db.example:5432/studies'"
    )
    assert mask_url("sqlite:///runs/studies.db") == "sqlite:///runs/studies.db"
    assert mask_url("redis://:pw@host/0") == "redis://:***@host/0"


def test_storage_comes_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv(STORAGE_ENV, url)
    monkeypatch.chdir(tmp_path)
    open_storage(None)
    assert (tmp_path / "env.db").is_file() and not (tmp_path / "runs").exists()


def test_a_read_only_open_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    for url in (None, f"sqlite:///{tmp_path / 'none.db'}", str(tmp_path / "none.journal")):
        with pytest.raises(UsageError, match="holds no studies"):
            open_storage(url, create=False)
    assert list(tmp_path.iterdir()) == []
