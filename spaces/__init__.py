"""Declarative search spaces: preset files, their schema, and trial -> trainer spec."""

from spaces.errors import SpaceError
from spaces.schema import (
    check_budget,
    check_build,
    check_name,
    load,
    loads,
    parse,
    preset_names,
    resolve,
)
from spaces.space import OBJECTIVES, Space

__all__ = [
    "OBJECTIVES",
    "Space",
    "SpaceError",
    "check_budget",
    "check_build",
    "check_name",
    "load",
    "loads",
    "parse",
    "preset_names",
    "resolve",
]
