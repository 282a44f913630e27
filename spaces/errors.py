"""The space error and the short form of a value that every message quotes."""

from __future__ import annotations

import reprlib
from typing import Any


class SpaceError(ValueError):
    """A preset that cannot be used; the message says where and what is accepted."""


# Few items, shallow and short: a message quotes a 3 MB value or an alias bomb in a line.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 2, 3, 3, 3
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 40


def show(value: Any, limit: int = 60) -> str:
    """`value` as a message quotes it: its repr, bounded in size whatever its size."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
