"""A search space: a validated preset file, and the code that turns an Optuna trial into a
trainer spec.

The space is define-by-run: `Space.suggest(trial)` asks Optuna for each switch and, only
when a technique is on, for its hyperparameters. The same code replays a finished trial
from its parameter dict through `optuna.trial.FixedTrial`, so export, re-training and
resuming never re-implement the mapping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import optuna

from trainer.spec import ArchSpec, TrainSpec, TrialSpec
from trainer.techniques import REGISTRY
from trainer.techniques.base import Hyper, Value

# `budget` is the parameter budget a configuration was scaled to (its size class); `params`
# the counted parameters, which under `scale` differ only within the 2% fit window.
OBJECTIVES = {
    "accuracy": "maximize",
    "budget": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
}
BUDGET_PARAM = "budget.params"  # the trial parameter of a searched budget level
SAMPLERS = ("tpe", "nsga2", "random")
SWITCHES = ("search", "on", "off")
PRUNERS = ("asha", "none")


@dataclass(frozen=True)
class HyperRange:
    """What a space makes of one hyperparameter: a fixed value, choices, or a range; or,
    for a conditional hyperparameter, one of those per value of the one it depends on."""

    hyper: Hyper
    fixed: Value | None = None
    choices: tuple[Value, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    cases: tuple[tuple[Value, HyperRange], ...] = ()

    def branch(self, name: str, values: dict[str, Value]) -> tuple[HyperRange, str]:
        """The range that applies given the technique's `values` so far, and its Optuna
        name: `name` for the first case, else `name_<given>` (`sam.rho_adaptive`), so each
        branch keeps its own distribution and the sampler never mixes them."""
        if not self.cases:
            return self, name
        given = self.hyper.given
        value = values[given]  # type: ignore[index]
        for i, (case, hyper_range) in enumerate(self.cases):
            if case == value and type(case) is type(value):
                if i == 0:
                    return hyper_range, name
                return (
                    hyper_range,
                    f"{name}_{given}" if value is True else f"{name}_{given}_{value}",
                )
        raise ValueError(f"{name}: no range for {given} = {value!r}")

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return trial.suggest_categorical(name, list(self.choices))
        if self.hyper.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def grid(self) -> tuple[Value, ...]:
        """The values a structural check builds: every value of a fixed, listed or integer
        range (architecture ranges are short), both ends of a float range."""
        if self.fixed is not None:
            return (self.fixed,)
        if self.choices is not None:
            return self.choices
        if self.hyper.integer:
            return tuple(range(int(self.low), int(self.high) + 1))
        return (self.low, self.high)  # type: ignore[return-value]

    def default(self) -> Value:
        """The registered default where this range admits it, else the nearest admitted value."""
        d = self.hyper.default
        if self.fixed is not None:
            return self.fixed
        if self.choices is not None:
            return d if d in self.choices else self.choices[0]
        return min(max(d, self.low), self.high)  # type: ignore[type-var]

    def describe(self) -> str:
        if self.cases:
            given = self.hyper.given
            return "; ".join(f"{r.describe()} if {given} = {v!r}" for v, r in self.cases)
        if self.fixed is not None:
            return repr(self.fixed)
        if self.choices is not None:
            return "{" + ", ".join(repr(c) for c in self.choices) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class TechniqueChoice:
    """One technique's declaration: searched, always on or off, and its hyperparameters."""

    name: str
    switch: str
    hypers: dict[str, HyperRange]


@dataclass(frozen=True)
class DataChoice:
    dataset: str
    val_fraction: float = 0.1
    resize: tuple[int, int] | None = None


@dataclass(frozen=True)
class Protocol:
    """A preset's recipe version and what its baseline is expected to reach with it.

    The baseline (seed 0, validation split of study seed 0) trained for `epochs` should reach
    validation accuracy `accuracy` within `tolerance`; with `train_images`, on only the first
    that many images of the training split, so that a large data set's check stays short. A
    slow test checks it, so a change that moves a preset's accuracy fails until the
    expectation is re-measured and `version` bumped; a stored study's space records the
    version it ran under.
    """

    version: int
    epochs: int
    accuracy: float
    tolerance: float
    train_images: int | None = None


@dataclass(frozen=True)
class PrunerChoice:
    """Successive halving over epochs (asynchronous, ASHA), or none.

    Rungs lie at `min_epochs * reduction**k` epochs before the last. A trial reaching a rung
    goes on only if its validation accuracy there is among the top 1/`reduction` of the
    accuracies the study's trials had at that same epoch; otherwise it is pruned.
    """

    kind: str = "none"
    min_epochs: int = 1
    reduction: int = 3  # Hyperband's default; each rung keeps a third

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The epochs at which trials of `epochs` epochs are compared (none when off)."""
        if self.kind != "asha":
            return ()
        rungs, rung = [], self.min_epochs
        while rung < epochs:
            rungs.append(rung)
            rung *= self.reduction
        return tuple(rungs)


@dataclass(frozen=True)
class Space:
    """A validated preset. Build one with `spaces.load`."""

    name: str
    description: str
    data: DataChoice
    arch: ArchSpec
    train: TrainSpec
    techniques: dict[str, TechniqueChoice]
    # Parameter budget levels: none, one, or several searched as the trial parameter
    # `budget.params`, each configuration scaled to (or checked against) its level.
    budgets: tuple[int, ...] = ()
    budget_policy: str = "scale"
    trials: int = 20
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "params", "latency_ms")
    # Techniques on in the reference configuration the study trains first; the others off.
    baseline: tuple[str, ...] = ()
    protocol: Protocol | None = None
    pruner: PrunerChoice = PrunerChoice()
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def suggest(self, trial: optuna.Trial, seed: int = 0) -> TrialSpec:
        """Ask `trial` for the budget level, every searched switch and hyperparameter; return
        the spec."""
        budget = self.budgets[0] if len(self.budgets) == 1 else None
        if len(self.budgets) > 1:
            budget = trial.suggest_categorical(BUDGET_PARAM, list(self.budgets))
        enabled: dict[str, dict[str, Value]] = {}
        for name, choice in self.techniques.items():
            on = choice.switch == "on" or (
                choice.switch == "search"
                and trial.suggest_categorical(f"{name}.enabled", [False, True])
            )
            if on:
                values: dict[str, Value] = {}
                for h, r in choice.hypers.items():
                    r, key = r.branch(f"{name}.{h}", values)
                    values[h] = r.suggest(trial, key)
                enabled[name] = values
        return TrialSpec(
            arch=self.arch,
            train=self.train,
            techniques=enabled,
            seed=seed,
            budget=budget,
            budget_policy=self.budget_policy,
        )

    def default_params(self, enabled: Iterable[str]) -> dict[str, Value]:
        """The parameters of the configuration with `enabled` (and every technique declared
        `on`) switched on at their default hyperparameters, and the others off; at the largest
        budget level when several are searched."""
        params: dict[str, Value] = {}
        if len(self.budgets) > 1:
            params[BUDGET_PARAM] = max(self.budgets)
        for name, choice in self.techniques.items():
            on = choice.switch == "on" or (choice.switch == "search" and name in enabled)
            if choice.switch == "search":
                params[f"{name}.enabled"] = on
            if on:
                values: dict[str, Value] = {}
                for h, r in choice.hypers.items():
                    r, key = r.branch(f"{name}.{h}", values)
                    values[h] = r.default()
                    if r.fixed is None:
                        params[key] = values[h]
        return params

    def baseline_params(self) -> dict[str, Value]:
        """The parameters of the baseline configuration the study trains first."""
        return self.default_params(self.baseline)

    def replay(self, params: dict[str, Value], seed: int = 0) -> TrialSpec:
        """The spec of a finished trial, from its parameter dict."""
        return self.suggest(optuna.trial.FixedTrial(params), seed)

    def columns(self, spec: TrialSpec) -> dict[str, Value | None]:
        """Every declared technique's switch and hyperparameters as flat `.`-named columns,
        fixed ones included, and its budget, so an exported row says exactly what the trial
        trained."""
        row: dict[str, Value | None] = {BUDGET_PARAM: spec.budget}
        for name in self.techniques:
            params = spec.techniques.get(name)
            row[f"{name}.enabled"] = params is not None
            for hyper in REGISTRY[name].hypers:
                row[f"{name}.{hyper.name}"] = None if params is None else params[hyper.name]
        return row
