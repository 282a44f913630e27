"""`search status`: read from the storage alone, writes nothing."""

from __future__ import annotations

import time
from pathlib import Path

from search import ledger
from search import study as studies
from search.storage import open_storage
from search.study import StudyConfig
from spaces import load


def test_status_shows_progress_running_failures_best_and_eta(search, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = load("quickstart")
    config = StudyConfig(space.source, 6, 0, None, 1, str(tmp_path / "w"), grace_period=60.0)
    study = studies.create_or_load(open_storage(url), "st", space, config)
    for accuracy in (0.5, 0.8):
        trial = study.ask()
        time.sleep(0.05)  # a measurable duration for the ETA
        study.tell(trial, [accuracy, 1990, 0.3])
    for failure in (ledger.DIVERGED, ledger.INTERRUPTED, ledger.INTERRUPTED):
        ledger.fail(study, study.ask().number, failure, "test")
    live = study.ask()
    live.set_user_attr("driver", "gpu-box-1:4242")
    live.set_user_attr(ledger.HEARTBEAT, time.time() - 5)
    dead = study.ask()
    dead.set_user_attr("driver", "gpu-box-2:77")
    dead.set_user_attr(ledger.HEARTBEAT, time.time() - 600)
    before = (tmp_path / "s.db").stat().st_mtime_ns

    out = search("status", "st", "--storage", url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "study 'st' (quickstart): 3/6 trials done, 1 running, 0 queued"
    assert f"running trial {live.number}: host gpu-box-1, driver gpu-box-1:4242" in out.stdout
    assert f"running trial {dead.number}: host gpu-box-2" in out.stdout
    assert "(stale: dead after 60s, not counted)" in out.stdout
    assert "failures: diverged 1, interrupted 2" in out.stdout
    objectives = ", ".join(
        f"{o} {v}" for o, v in zip(space.objectives, (0.8, 1990, 0.3), strict=True)
    )
    assert f"best so far: trial 1, {objectives}" in out.stdout
    assert "ETA: about" in out.stdout and "3 trials left" in out.stdout
    assert (tmp_path / "s.db").stat().st_mtime_ns == before  # read only


def test_status_of_a_missing_storage_or_study_is_a_short_error(search, tmp_path: Path) -> None:
    out = search("status", "nope")
    assert out.returncode == 2 and "holds no studies" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []  # no runs/, no database created

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_storage(url)
    out = search("status", "nope", "--storage", url)
    assert out.returncode == 2 and "no study named 'nope'" in out.stderr
