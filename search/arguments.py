"""The command line's values: the argparse types that turn a word into a checked value, or
into one line saying what was expected (argparse then exits with status 2), and the
sequential plan `search ablate --seeds auto` asks for, checked before anything runs."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from search import execution as executions
from search.errors import UsageError
from spaces import SpaceError, check_name

if TYPE_CHECKING:
    from search.sequential import Plan

AUTO = "auto"  # `search ablate --seeds auto`: sequential seeds
SEQUENTIAL_ARGS = ("min_seeds", "max_seeds", "min_effect")  # only with --seeds auto


def integer(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r}: expected an integer in [{low}, {high}]"
            )
        return value

    return parse


def run_seeds(text: str) -> int:
    """`search run --seeds K`: a number; sequential seeds need a design's comparisons."""
    if text == AUTO:
        raise argparse.ArgumentTypeError(
            "'auto' is for `search ablate`, which adds seeds where a comparison is open; "
            "give a number"
        )
    return integer(1, 1000)(text)


def design_seeds(text: str) -> int | str:
    """`search ablate --seeds`: a number, or 'auto' for sequential seeds."""
    return AUTO if text == AUTO else integer(1, 1000)(text)


def points(text: str) -> float:
    """Accuracy points (`--min-effect 0.5`: half a point), above 0 and below 100."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r}: expected accuracy points between 0 and 100, e.g. 0.5"
        )
    return value


def study_name(text: str) -> str:
    try:
        return check_name(text, "study name")
    except SpaceError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def fraction(text: str) -> float:
    """A fraction of a GPU, in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected a fraction of a GPU in [0, 1]")
    return value


def fuse(text: str) -> str:
    """`--fuse`: auto, off, or a group size (`search.execution.parse_fuse`)."""
    try:
        return executions.parse_fuse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def seeds_plan(args: argparse.Namespace) -> Plan | None:
    """The sequential plan `--seeds auto` asks for; None for fixed seeds."""
    from search.sequential import Plan  # scipy: only for a design about to run

    if args.seeds != AUTO:
        given = [f"--{a.replace('_', '-')}" for a in SEQUENTIAL_ARGS if getattr(args, a)]
        if given:
            raise UsageError(f"{given[0]} goes with --seeds auto, not --seeds {args.seeds}")
        return None
    low, high = args.min_seeds or Plan.min_seeds, args.max_seeds or Plan.max_seeds
    if low > high:
        raise UsageError(f"--min-seeds {low} is above --max-seeds {high}")
    effect = args.min_effect and args.min_effect / 100  # points -> accuracy
    try:
        return Plan(min_seeds=low, max_seeds=high, min_effect=effect)
    except ValueError as err:
        raise UsageError(f"--seeds auto: {err}") from None
