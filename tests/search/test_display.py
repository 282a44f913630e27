"""What a running study shows: plain lines (a log file, a pipe) and the live view (a
terminal), fed the events the searcher sends, on a real study in SQLite."""

from __future__ import annotations

import io
import re
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from search import display, progress
from search import study as studies
from search.storage import open_storage
from search.study import StudyConfig
from spaces import Space, load

WIDTH = 80  # a common terminal: nothing wraps


@pytest.fixture
def designed(tmp_path: Path) -> tuple[optuna.Study, StudyConfig]:
    """An empty designed study of 6 trials: 2 configurations x 3 seeds, 2 epochs."""
    space = load("quickstart")
    config = StudyConfig(
        space.source, 6, 0, None, 2, str(tmp_path / "w"), design="oat", seeds=3, pruner="none"
    )
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    return studies.create_or_load(storage, "d", config.space(), config, queue=[]), config


def start(
    study: optuna.Study, space: Space, board: display.Board, label: str, seed: int
) -> optuna.Trial:
    """A trial of configuration `label` asked and handed to Ray, as the searcher does it."""
    study.enqueue_trial(
        space.default_params([label.removeprefix("+")]), user_attrs={"config": label, "seed": seed}
    )
    trial = study.ask()
    space.suggest(trial, seed=seed)
    board.started(trial, space.train.epochs)
    return trial


def finish(study: optuna.Study, board: display.Board, trial: optuna.Trial, accuracy: float) -> None:
    study.tell(trial, [accuracy, 2000, 0.3])
    objectives = board.space.objectives
    board.ended(trial.number, progress.outcome(study.trials[trial.number], objectives))


def test_plain_lines_name_each_trial_and_say_none_yet_before_a_result(designed) -> None:
    study, config = designed
    lines: list[str] = []
    board = display.Lines(study, config, write=lines.append)
    space = board.space
    se = start(study, space, board, "+se", seed=1)
    board.epoch(se.number, 1, 0.7868, 27.2)
    assert lines[0].startswith("[0/6] trial 0 (+se, seed 1) started: 2 epochs | ")
    assert re.fullmatch(
        r"\[0/6\] trial 0 \(\+se, seed 1\) epoch 1/2: accuracy 0\.7868, 27s in \| failed 0, "
        r"pruned 0, best: none yet \| ETA \S+, \d+s elapsed",
        lines[1],
    ), lines[1]

    finish(study, board, se, 0.80)
    lucky = start(study, space, board, "+gap", seed=1)
    finish(study, board, lucky, 0.95)
    assert (
        "[1/6] trial 0 (+se, seed 1) done: accuracy 0.8, budget 2,000, latency_ms 0.3 |"
        in (lines[2])
    )
    assert "| failed 0, pruned 0, best: trial 0 (+se), accuracy 0.8 | ETA " in lines[2]
    for seed, accuracy in ((2, 0.90), (3, 0.92)):
        finish(study, board, start(study, space, board, "+se", seed), accuracy)
    finish(study, board, start(study, space, board, "+gap", seed=2), 0.60)
    # +se averages 0.873 over 3 seeds; +gap 0.775 over 2, though its seed 1 is the best trial.
    assert "best: +se, mean of 3 seeds: accuracy 0.8733 |" in lines[-1]
    for line in lines:
        assert " (+se, seed " in line or " (+gap, seed " in line
        assert "nan" not in line


def test_the_live_view_draws_a_line_per_running_trial_and_the_studys_line(designed) -> None:
    study, config = designed
    console = Console(record=True, force_terminal=True, width=WIDTH, file=io.StringIO())
    board = display.LiveView(study, config, console)
    space = board.space
    done = start(study, space, board, "+se", seed=1)
    finish(study, board, done, 0.91)
    se = start(study, space, board, "+se", seed=2)
    board.epoch(se.number, 1, 0.7868, 27.2)
    start(study, space, board, "+gap", seed=1)  # no epoch yet
    printed = console.export_text(clear=True).splitlines()
    assert printed == [
        "trial 0 (+se, seed 1) done: accuracy 0.91, budget 2,000, latency_ms 0.3"
    ]  # lasting events only: epochs and starts are drawn, not printed

    console.print(board.render())
    drawn = [line.rstrip() for line in console.export_text().splitlines()]
    assert len(drawn) == 5, drawn
    assert drawn[0].split() == ["trial", "configuration", "seed", "epoch", "accuracy", "elapsed"]
    bar = "[━╸╺]{20}"  # BAR_WIDTH
    assert re.fullmatch(rf" +1  \+se +2  {bar}  1/2 +0\.7868 +\d+s", drawn[1]), drawn[1]
    assert re.fullmatch(rf" +2  \+gap +1  {bar}  0/2 +- +\d+s", drawn[2]), drawn[2]
    timing = r"ETA \S+, \d+s elapsed"
    study = rf"study {bar} 1/6 done, failed 0, pruned 0 \| {timing}"
    assert re.fullmatch(study, drawn[3]), drawn[3]
    assert drawn[4] == "      best: trial 0 (+se), accuracy 0.91"
    assert all(len(line) <= WIDTH for line in drawn)


def test_a_log_file_gets_plain_lines(designed, capsys) -> None:
    study, config = designed
    with display.board(study, config) as board:  # pytest's captured stdout: no terminal
        assert isinstance(board, display.Lines)
        board.note("a note")
    assert capsys.readouterr().out.startswith("[0/6] a note | failed 0, pruned 0, best: none yet")
