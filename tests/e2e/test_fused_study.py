"""`search ablate --design oat --seeds 3 --fuse 3` end to end on CPU, through real Ray and
Optuna: queued trials that may share a network train as fused groups of up to three, one Ray
task each, every member its own trial and row. The driver is killed with SIGKILL at its first
group's first epoch report (every member's checkpoint of that epoch written) and the study
continued with `search resume`: every member of that group is re-run from that epoch,
nothing finished is trained twice, the target is reached, and no Ray process outlives its
driver. The space is the quickstart with three of its techniques (4 configurations: the
baseline, +label_smoothing and +mixup build one network, +blurpool its own), half the
trials of the whole quickstart's ablation for the same proof."""

from __future__ import annotations

import copy
import csv
import signal
import subprocess
import tempfile
from collections import Counter
from io import StringIO
from pathlib import Path

import optuna
import procs
import pytest
import yaml
from conftest import run_search
from optuna.trial import TrialState

from search import ledger
from spaces import load

pytestmark = pytest.mark.slow

TRIALS = 12  # 4 oat configurations x 3 seeds


def test_a_fused_ablation_survives_kill_9_with_every_member_resumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    tag = procs.new_tag()
    env = {
        procs.TAG: tag,
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="rg", dir="/tmp"),  # short: Ray's socket paths
    }
    raw = copy.deepcopy(load("quickstart").source)
    raw["techniques"] = {t: raw["techniques"][t] for t in ("blurpool", "label_smoothing", "mixup")}
    raw["search"]["baseline"] = []
    space = tmp_path / "three.yaml"
    space.write_text(yaml.safe_dump(raw))
    ablate = ["ablate", str(space), "--design", "oat", "--seeds", "3", "--fuse", "3"]
    ablate += ["--epochs", "2", "--study", "g", "--storage", url, "--parallel", "1"]

    def search(*args: str, failpoint: str = "") -> subprocess.CompletedProcess:
        return run_search(
            *args, cwd=tmp_path, env={**env, "SEARCH_FAILPOINT": failpoint}, timeout=900
        )

    try:
        killed = search(*ablate, failpoint="epoch")  # the driver dies on its first epoch report
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        running = optuna.load_study(study_name="g", storage=url).get_trials(
            states=(TrialState.RUNNING,)
        )
        assert len(running) == 3  # one group at once, of three
        assert len({t.user_attrs[ledger.GROUP] for t in running}) == 1
        checkpoints = tmp_path / "runs" / "weights" / "g" / "checkpoints"
        assert len(list(checkpoints.glob("*.pt"))) == 3  # one per member, after epoch 1

        resumed = search("resume", "g", "--storage", url, "--parallel", "2")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "3 interrupted trial(s) queued to train again" in resumed.stdout
        exported = search("export", "g", "--storage", url)
        assert exported.returncode == 0, exported.stderr
    finally:
        procs.kill_tagged(tag)  # whatever Ray left, should the reaper have failed
    assert not procs.tagged(tag)

    study = optuna.load_study(study_name="g", storage=url)
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    trained = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = {ledger.config_key(t.params, t.user_attrs[ledger.SEED]) for t in trained}
    assert len(trained) == len(keys) == TRIALS  # the target, nothing trained twice
    interrupted = {t.number for t in running}
    reruns = [t for t in trials if ledger.RERUN_OF in t.user_attrs]
    assert sorted(t.user_attrs[ledger.RERUN_OF] for t in reruns) == sorted(interrupted)
    for rerun in reruns:  # every member of the killed group went on from its epoch 1
        assert rerun.state == TrialState.COMPLETE
        assert rerun.user_attrs[ledger.RESUMED_FROM_EPOCH] == 1
    for number in interrupted:
        assert study.trials[number].user_attrs[ledger.FAILURE] == ledger.INTERRUPTED
    sizes = Counter(t.user_attrs[ledger.GROUP] for t in trained)
    # Three in four trained trials in full groups (the kill and the resume may split some).
    assert set(sizes.values()) <= {1, 2, 3} and sum(size == 3 for size in sizes.values()) >= 3
    assert not list(checkpoints.iterdir())  # every outcome recorded, every checkpoint gone

    rows = list(csv.DictReader(StringIO(exported.stdout)))
    assert len(rows) == len(trials)
    for row in rows:
        trial = study.trials[int(row["number"])]
        assert row["group"] == str(trial.user_attrs.get(ledger.GROUP, ""))
        assert row["seed"] == str(trial.user_attrs[ledger.SEED])
