"""Declarative search spaces: preset files, their schema, and trial -> trainer spec."""

from spaces.schema import SpaceError, check_build, load, parse, preset_names, resolve
from spaces.space import OBJECTIVES, Space

__all__ = [
    "OBJECTIVES",
    "Space",
    "SpaceError",
    "check_build",
    "load",
    "parse",
    "preset_names",
    "resolve",
]
