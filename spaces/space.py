"""A search space: a validated preset file, and the code that turns an Optuna trial into a
trainer spec.

The space is define-by-run: `Space.suggest(trial)` asks Optuna for each switch and, only
when a technique is on, for its hyperparameters. The same code replays a finished trial
from its parameter dict through `optuna.trial.FixedTrial`, so export, re-training and
resuming never re-implement the mapping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import optuna

from trainer.models.net import stage_channels
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
TRAIN_PREFIX = "train."  # trial parameters of searched recipe fields: `train.lr`, ...
MODEL_PREFIX = "model."  # trial parameters of searched model fields: the stage ratio, stages
STAGE_RATIO = "model.stage_ratio"  # the trial parameter of a searched stage width ratio
STAGE_FIELDS = ("blocks", "kernel")  # per-stage fields a space may search (`stage_param`)
SAMPLERS = ("tpe", "nsga2", "random")
SWITCHES = ("search", "on", "off")
PRUNERS = ("asha", "none")


def stage_param(index: int, field: str) -> str:
    """The trial parameter of a searched stage field: `model.stages[0].blocks`."""
    return f"{MODEL_PREFIX}stages[{index}].{field}"


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
class RecipeRange:
    """A searched field of the recipe (`train.lr`, `model.stage_ratio`,
    `model.stages[0].blocks`): its range, and the value the baseline and designed studies
    train, with where that value comes from."""

    name: str  # the trial parameter
    range: HyperRange
    default: Value
    default_from: str  # "declared default", "first choice", "midpoint", "geometric midpoint"

    @classmethod
    def of(cls, name: str, hyper_range: HyperRange, declared: Value | None) -> RecipeRange:
        """The default is the declared one, else a list's first choice, else the middle of
        the range (geometric on a log scale, rounded for an integer)."""
        r = hyper_range
        if declared is not None:
            return cls(name, r, declared, "declared default")
        if r.choices is not None:
            return cls(name, r, r.choices[0], "first choice")
        low, high = float(r.low), float(r.high)  # type: ignore[arg-type]
        middle = math.sqrt(low * high) if r.log else (low + high) / 2
        middle = min(max(middle, low), high)  # a square root may round past an end
        value: Value = round(middle) if r.hyper.integer else middle
        return cls(name, r, value, "geometric midpoint" if r.log else "midpoint")

    def describe(self) -> str:
        """`train.lr = 0.0775 (the geometric midpoint of [0.02, 0.3] log)`, for the terminal."""
        shown = f"{self.default:g}" if isinstance(self.default, float) else repr(self.default)
        return f"{self.name} = {shown} (the {self.default_from} of {self.range.describe()})"


def with_model_fields(arch: ArchSpec, recipe: dict[str, Value]) -> ArchSpec:
    """`arch` with the searched model fields of `recipe` applied: the stage ratio, then each
    stage's blocks and kernel."""
    if STAGE_RATIO in recipe:
        arch = with_stage_ratio(arch, float(recipe[STAGE_RATIO]))
    stages = tuple(
        replace(
            stage,
            **{f: recipe[stage_param(i, f)] for f in STAGE_FIELDS if stage_param(i, f) in recipe},
        )
        for i, stage in enumerate(arch.stages)
    )
    return replace(arch, stages=stages)


def with_stage_ratio(arch: ArchSpec, ratio: float) -> ArchSpec:
    """`arch` with stage i `stages[0].channels * ratio**i` channels wide (rounded, at least
    one): the width distribution across stages, before the budget scales them all."""
    first = arch.stages[0].channels
    stages = tuple(
        replace(stage, channels=max(1, round(first * ratio**i)))
        for i, stage in enumerate(arch.stages)
    )
    return replace(arch, stages=stages)


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
    # Whether a left-right mirror keeps an image's label (CIFAR yes, digits no): techniques
    # that feed mirrored images (flip TTA) are refused unless the space says so.
    flip_invariant: bool = False


@dataclass(frozen=True)
class Expected:
    """What a space's baseline is expected to reach: seed 0, validation split of study seed
    0, trained for `epochs`, validation accuracy `accuracy` within `tolerance`; with
    `train_images`, on only the first that many images of the training split, so that a
    large data set's check stays short."""

    epochs: int
    accuracy: float
    tolerance: float
    train_images: int | None = None


@dataclass(frozen=True)
class Protocol:
    """A space's recipe version and, optionally, what its baseline is expected to reach.

    Every shipped preset states `expected`, and a slow test checks it, so a change that
    moves a preset's accuracy fails until the expectation is re-measured and `version`
    bumped; a stored study's space records the version it ran under. A user's own space
    may leave `expected` out: nothing checks it, and a data set never measured has no
    number to state.
    """

    version: int
    expected: Expected | None = None


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
    """A validated preset. Build one with `spaces.load`.

    `arch` and `train` are the baseline's: a searched recipe field holds its default there,
    and `recipe` says how each searched one is drawn."""

    name: str
    description: str
    data: DataChoice
    arch: ArchSpec
    train: TrainSpec
    techniques: dict[str, TechniqueChoice]
    recipe: tuple[RecipeRange, ...] = ()
    # `model.stage_ratio`: fixed, or the default of a searched one; None: channels as declared.
    stage_ratio: float | None = None
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

    def with_epochs(self, epochs: int) -> Space:
        """This space trained for `epochs` epochs (`--epochs`), searched or not before."""
        recipe = tuple(r for r in self.recipe if r.name != f"{TRAIN_PREFIX}epochs")
        return replace(self, train=replace(self.train, epochs=epochs), recipe=recipe)

    def searches(self, name: str) -> bool:
        """Whether the recipe field `name` (`train.epochs`, `model.stage_ratio`,
        `model.stages[0].blocks`) is searched."""
        return any(r.name == name for r in self.recipe)

    def suggest(self, trial: optuna.Trial, seed: int = 0) -> TrialSpec:
        """Ask `trial` for the budget level, every searched recipe field, switch and
        hyperparameter; return the spec."""
        budget = self.budgets[0] if len(self.budgets) == 1 else None
        if len(self.budgets) > 1:
            budget = trial.suggest_categorical(BUDGET_PARAM, list(self.budgets))
        recipe = {r.name: r.range.suggest(trial, r.name) for r in self.recipe}
        train = replace(
            self.train,
            **{
                k.removeprefix(TRAIN_PREFIX): v
                for k, v in recipe.items()
                if k.startswith(TRAIN_PREFIX)
            },
        )
        arch = with_model_fields(self.arch, recipe)
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
            arch=arch,
            train=train,
            techniques=enabled,
            seed=seed,
            budget=budget,
            budget_policy=self.budget_policy,
        )

    def default_params(self, enabled: Iterable[str]) -> dict[str, Value]:
        """The parameters of the configuration with `enabled` (and every technique declared
        `on`) switched on at their default hyperparameters, and the others off; with every
        searched recipe field at its default; at the largest budget level when several are
        searched."""
        params: dict[str, Value] = {}
        if len(self.budgets) > 1:
            params[BUDGET_PARAM] = max(self.budgets)
        params.update({r.name: r.default for r in self.recipe})
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

    def columns(self, params: dict[str, Value], seed: int = 0) -> dict[str, Value | None]:
        """The trial of `params` as flat `.`-named columns, so that an exported row says
        exactly what it trained: its budget, every recipe field (`train.lr`, searched or
        not), the stages' channels before the budget scaled them (`model.stages`, stem
        first) and the stage ratio that set them, each searched stage field, every declared
        technique's switch and hyperparameters, fixed ones included (None where the
        technique is off, or the model leaves it no such hyperparameter)."""
        spec = self.replay(params, seed)
        row: dict[str, Value | None] = {BUDGET_PARAM: spec.budget}
        row.update({TRAIN_PREFIX + f.name: getattr(spec.train, f.name) for f in fields(spec.train)})
        row["model.stages"] = "-".join(map(str, stage_channels(spec.arch)))
        if self.stage_ratio is not None:
            row[STAGE_RATIO] = params.get(STAGE_RATIO, self.stage_ratio)
        for i, stage in enumerate(spec.arch.stages):
            for f in STAGE_FIELDS:
                if self.searches(stage_param(i, f)):
                    row[stage_param(i, f)] = getattr(stage, f)
        for name in self.techniques:
            values = spec.techniques.get(name) or {}
            row[f"{name}.enabled"] = name in spec.techniques
            for hyper in REGISTRY[name].hypers:
                row[f"{name}.{hyper.name}"] = values.get(hyper.name)
        return row
