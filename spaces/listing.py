"""Listing a finite space: every configuration a define-by-run space can propose.

A space is walked with a stand-in for an Optuna trial that answers from fixed parameters and
branches at each parameter it has no answer for, so conditional parameters (a technique's
hyperparameters only where it is on) are listed only where they exist. The searcher uses the
list to propose untried configurations itself, and to know when every one is tried.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from spaces.space import Space

# Configurations a finite space may have for the searcher to list them all.
MAX_LISTED = 4096


class _Branch(Exception):
    """A parameter `_Probe` has no answer for, with its values (None: a continuum)."""

    def __init__(self, name: str, values: list[Any] | None):
        super().__init__(name)
        self.name, self.values = name, values


class _Probe:
    """A stand-in for an Optuna trial that answers from fixed parameters, so that walking
    a define-by-run space lists its configurations, conditional parameters included."""

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.user_attrs: dict[str, Any] = {}

    def _answer(self, name: str, values: list[Any] | None) -> Any:
        if name not in self.params:
            raise _Branch(name, values)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Iterable[Any]) -> Any:
        return self._answer(name, list(choices))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        values = range(low, high + 1, step)
        return self._answer(name, list(values) if len(values) <= MAX_LISTED else None)

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return self._answer(name, [low] if low == high else None)

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value


def finite_configurations(space: Space, limit: int = MAX_LISTED) -> list[dict[str, Any]] | None:
    """Every configuration of `space` as a parameter dict, or None when it has a continuous
    parameter or more than `limit` configurations."""
    found: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = [{}]
    while stack:
        params = stack.pop()
        try:
            space.suggest(_Probe(params))  # type: ignore[arg-type]
        except _Branch as branch:
            if branch.values is None:
                return None
            stack.extend({**params, branch.name: v} for v in reversed(branch.values))
        else:
            found.append(params)
        if len(found) + len(stack) > limit:
            return None
    return found
