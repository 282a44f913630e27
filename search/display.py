"""What a running study shows while it runs: each trial this driver runs (its configuration
label, seed, epoch, validation accuracy, time since it started) and the study's line (trials
done of the target, failed, pruned, the best configuration so far, ETA, time elapsed).

The searcher (`search.runner.StudySearcher`) tells a `Board` every event. On a terminal the
board is a `LiveView`: rich redraws one line per running trial, with an epoch bar, and the
study's line with its own bar, in place; finished trials and notes scroll above it. Anywhere
else (a log file, a pipe, `nohup`) it is `Lines`: every event is one plain line with the same
content, so a log reads without a terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from search import ledger, progress
from search.study import StudyConfig

BAR_WIDTH = 20  # characters of a trial's epoch bar in the live view
REFRESH_PER_SECOND = 2  # the live view's redraws: elapsed times tick by the second


@dataclass
class Row:
    """A trial this driver runs, as shown."""

    number: int
    label: str
    seed: int
    epochs: int
    started: float  # time.monotonic() when it was handed to Ray
    epoch: int = 0
    accuracy: float | None = None

    def name(self) -> str:
        return f"trial {self.number} ({self.label}, seed {self.seed})"


@dataclass(frozen=True)
class StudyLine:
    """The study's standing after the latest event."""

    done: int
    target: int
    failed: int
    pruned: int
    best: progress.Leader | None
    eta: str

    def tally(self) -> str:
        return f"failed {self.failed}, pruned {self.pruned}"

    def best_text(self, objective: str) -> str:
        return "best: " + ("none yet" if self.best is None else self.best.describe([objective]))

    def timing(self, elapsed: float) -> str:
        return f"ETA {self.eta}, {progress.duration(elapsed)} elapsed"


class Board:
    """A run's progress as events arrive; `show` is how a view shows each one.

    Events come from Ray Tune's loop and from the heartbeat thread (a dead driver's trials
    taken over): the rows are changed under a lock, which a live view's redraws take too.
    """

    def __init__(self, study: optuna.Study, settings: StudyConfig):
        self.study, self.settings = study, settings
        self.space = settings.space()
        halving = bool(self.space.pruner.rungs(self.space.train.epochs))
        self.eta = progress.Eta(self.space.train.epochs, halving)
        self.start = time.monotonic()
        self.rows: dict[int, Row] = {}
        self.lock = threading.Lock()
        self.line = self._study_line()

    def __enter__(self) -> Board:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def started(self, trial: optuna.Trial, epochs: int) -> None:
        """Trial `trial` was handed to Ray, to train `epochs` epochs."""
        row = Row(
            trial.number,
            progress.label(trial, self.space),
            trial.user_attrs[ledger.SEED],
            epochs,
            time.monotonic(),
        )
        with self.lock:
            self.rows[row.number] = row
        self.show(f"{row.name()} started: {epochs} epochs", lasting=False)

    def epoch(self, number: int, epoch: int, accuracy: float, seconds: float) -> None:
        """Trial `number` finished epoch `epoch` with validation accuracy `accuracy`, after
        `seconds` of running as its worker measured them (Ray may deliver several epochs'
        reports at once: the driver's clock would give them one time)."""
        with self.lock:
            row = self.rows.get(number)
            if row is None:
                return
            row.epoch, row.accuracy = epoch, accuracy
            self.eta.epoch(number, epoch, row.epochs)
        self.line = self._study_line()
        self.show(
            f"{row.name()} epoch {epoch}/{row.epochs}: accuracy {accuracy:.4f}, "
            f"{progress.duration(seconds)} in",
            lasting=False,
        )

    def ended(self, number: int, outcome: str) -> None:
        """Trial `number` ended as `outcome` says (see `progress.outcome`)."""
        with self.lock:
            row = self.rows.pop(number, None)
            self.eta.finished(number)
        self.line = self._study_line()
        self.show(f"{row.name() if row else f'trial {number}'} {outcome}", lasting=True)

    def note(self, message: str) -> None:
        """Anything else worth a line: a proposal not trained, a dead driver taken over."""
        self.line = self._study_line()
        self.show(message, lasting=True)

    def show(self, message: str, lasting: bool) -> None:
        """Show an event; `lasting` ones (trials ended, notes) stay readable afterwards."""
        raise NotImplementedError

    def _study_line(self) -> StudyLine:
        trials = self.study.get_trials(deepcopy=False)
        with self.lock:
            eta = self.eta.remaining(trials, self.settings.trials)
        return StudyLine(
            done=ledger.done(trials),
            target=self.settings.trials,
            failed=sum(t.state == TrialState.FAIL and ledger.counted(t) for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            best=progress.leader(trials, self.space),
            eta=eta,
        )

    def best(self) -> str:
        """'best: +se, mean of 3 seeds: accuracy 0.91', or 'best: none yet'."""
        return self.line.best_text(self.space.objectives[0])

    def timing(self) -> str:
        """'ETA 12m05s, 3m10s elapsed'."""
        return self.line.timing(time.monotonic() - self.start)


class Lines(Board):
    """Every event as one plain line: `[done/target] event | the study's line`."""

    def __init__(
        self, study: optuna.Study, settings: StudyConfig, write: Callable[[str], None] | None = None
    ):
        super().__init__(study, settings)
        self.write = write or (lambda line: print(line, flush=True))

    def show(self, message: str, lasting: bool) -> None:
        line = self.line
        self.write(
            f"[{line.done}/{line.target}] {message} | {line.tally()}, {self.best()} | "
            f"{self.timing()}"
        )


class LiveView(Board):
    """On a terminal: the running trials and the study redrawn in place (rich's `Live`),
    ended trials and notes printed above them as they happen."""

    def __init__(self, study: optuna.Study, settings: StudyConfig, console: Console):
        super().__init__(study, settings)
        self.console = console
        self.live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=True,
            redirect_stderr=True,
        )

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.live.stop()  # the last drawing stays on the screen

    def show(self, message: str, lasting: bool) -> None:
        if lasting:
            self.console.print(Text(message), soft_wrap=True)
        self.live.refresh()

    def render(self) -> RenderableType:
        """One line per running trial, then the study's two: its bar, counts and times, and
        its best configuration."""
        now = time.monotonic()
        table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
        for header, justify in (
            ("trial", "right"),
            ("configuration", "left"),
            ("seed", "right"),
            ("epoch", "left"),
            ("", "right"),
            ("accuracy", "right"),
            ("elapsed", "right"),
        ):
            table.add_column(header, justify=justify, no_wrap=True)
        with self.lock:
            rows = sorted(self.rows.values(), key=lambda r: r.number)
        for row in rows:
            table.add_row(
                str(row.number),
                row.label,
                str(row.seed),
                ProgressBar(total=row.epochs, completed=row.epoch, width=BAR_WIDTH),
                f"{row.epoch}/{row.epochs}",
                "-" if row.accuracy is None else f"{row.accuracy:.4f}",
                progress.duration(now - row.started),
            )
        line = self.line
        study = Table.grid(padding=(0, 1))
        study.add_row(
            Text("study", style="bold"),
            ProgressBar(total=line.target, completed=line.done, width=BAR_WIDTH),
            f"{line.done}/{line.target} done,",
            Text(f"{line.tally()} | {self.timing()}"),
        )
        best = Text(f"      {self.best()}")  # under the bar
        return Group(table, study, best) if rows else Group(study, best)


def board(study: optuna.Study, settings: StudyConfig) -> Board:
    """The live view when standard output is a terminal that can redraw, else plain lines."""
    console = Console(file=sys.stdout)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(study, settings, console)
    return Lines(study, settings)
