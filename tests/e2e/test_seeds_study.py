"""Seeds end to end through real Ray and SQLite, on a space small enough to train in seconds:
`search ablate --seeds auto` killed with SIGKILL at a round boundary and resumed, and
`search run --seeds 2` with its rows, front and report."""

from __future__ import annotations

from collections import Counter
from io import StringIO
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import run_search
from optuna.trial import TrialState

from search import ledger
from search.front import RULE
from search.sequential import PROCEDURE

pytestmark = pytest.mark.slow

TINY = """name: tiny
data: {dataset: digits, val_fraction: 0.2}
model: {stem_channels: 4, stages: [{channels: 8}]}
train: {epochs: 1, batch_size: 128}
search: {trials: 2, objectives: [accuracy, latency_ms]}
techniques: {se: search, label_smoothing: search, mixup: search}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


def test_sequential_seeds_survive_a_kill_between_rounds(search, tiny: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["--study", "a", "--storage", url, "--parallel", "2"]
    design = ["ablate", tiny, "--seeds", "auto", "--min-seeds", "2", "--max-seeds", "3", *args]
    killed = run_search(*design, cwd=tmp_path, env={"SEARCH_FAILPOINT": "round"})
    assert killed.returncode == -9, killed.stderr + killed.stdout
    study = optuna.load_study(study_name="a", storage=url)
    assert ledger.done(study.trials) == 8  # round 1: 4 configurations x 2 seeds
    assert study.user_attrs["trials"] > 8  # the next round's target, written first
    assert not study.get_trials(states=(TrialState.WAITING,))  # killed before its queue

    resumed = search("resume", "a", *args[2:])
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "one more paired seed for baseline (seed 2)" in resumed.stdout
    study = optuna.load_study(study_name="a", storage=url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    pairs = Counter((t.user_attrs["config"], t.user_attrs["seed"]) for t in trials)
    assert set(pairs.values()) == {1}  # no configuration trained a seed twice
    seeds: dict[str, list[int]] = {}
    for label, seed in sorted(pairs):
        seeds.setdefault(label, []).append(seed)
    assert seeds["baseline"] == [0, 1, 2]  # a comparison is open after 2 seeds (df 1)
    assert all(s in ([0, 1], [0, 1, 2]) for s in seeds.values())
    assert ledger.done(study.trials) == study.user_attrs["trials"] == len(trials)
    assert not study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))

    report = search("report", "a", "--storage", url, "-o", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert PROCEDURE in markdown and "seeds needed" in markdown


def test_a_search_with_two_seeds_exports_each_and_fronts_their_means(
    search, tiny: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = search("run", tiny, "--seeds", "2", "--study", "r", "--storage", url, "--parallel", "2")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "[4/4]" in run.stdout and RULE.split(":")[0] in run.stdout
    exported = search("export", "r", "--storage", url)
    table = pd.read_csv(StringIO(exported.stdout))
    trained = table[(table["state"] == "COMPLETE") & table["duplicate_of"].isna()]
    assert len(trained) == 4 and sorted(trained["seed"]) == [0, 0, 1, 1]
    switches = [c for c in table.columns if c.endswith(".enabled")]
    assert (trained.groupby(switches)["seed"].apply(sorted) == [[0, 1]] * 2).all()
    assert {"pareto", "front"} <= set(table.columns)
    # a configuration is on the noise-aware front with both its seeds, or off it
    assert (trained.groupby(switches)["front"].nunique() == 1).all()
