"""Declarative search spaces: preset files, their schema, and trial -> trainer spec.

`files` finds a space file (a shipped preset or a path), reads it bounded and loads it;
`schema` checks its sections; `checks` cross-checks a valid space against the data's images
(every network builds, the baseline fits the budget); `space` holds the `Space` that turns an
Optuna trial into a trainer spec.
"""

from spaces.checks import check_budget, check_build, check_length
from spaces.errors import SpaceError
from spaces.files import load, loads, preset_names, resolve
from spaces.schema import check_name, parse
from spaces.space import OBJECTIVES, Space

__all__ = [
    "OBJECTIVES",
    "Space",
    "SpaceError",
    "check_budget",
    "check_build",
    "check_length",
    "check_name",
    "load",
    "loads",
    "parse",
    "preset_names",
    "resolve",
]
