"""Designed ablation studies: which configurations to train, as pure functions of a space.

A design is a list of configurations, each a set of switched-on searchable techniques at
their default hyperparameters with a short label (`baseline`, `+blurpool`, `-depthwise`,
`full`, `full-mixup`, `paper`). `search ablate` queues every configuration once per seed,
seed-major, so seed s is the same initialisation and data-order seed for every
configuration (paired seeds) and a study stopped part-way holds whole seeds first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from search import ledger
from search.errors import UsageError
from spaces import Space
from spaces.checks import over_budget
from trainer import techniques as registry
from trainer.budget import BudgetError, resolve_arch
from trainer.techniques import rules
from trainer.techniques.base import Value

DESIGNS = ("oat", "loo", "both", "paper")
# The combination of the efficient-CNN paper the `paper` design reproduces, on its baseline.
PAPER = ("blurpool", "cutout", "mixup", "label_smoothing", "swa", "sam")


@dataclass(frozen=True)
class Config:
    """One configuration: the searchable techniques it switches on, and its labels."""

    label: str
    techniques: frozenset[str]
    # Labels other parts of the design give this same configuration (trained once).
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class Combination:
    """Techniques combined into one configuration, and the rules that decided it."""

    techniques: tuple[str, ...]
    rules: tuple[rules.Rule, ...]  # the rules between two of its techniques
    dropped: dict[str, str] = field(default_factory=dict)  # technique -> why it is left out


@dataclass(frozen=True)
class Design:
    """The configurations a designed study trains, each once per seed."""

    name: str
    configs: tuple[Config, ...]
    references: tuple[str, ...]  # labels the effects are measured against
    combination: Combination | None = None
    excluded: dict[str, str] = field(default_factory=dict)  # label -> why it is not trained

    def queue(self, space: Space, seeds: Iterable[int]) -> list[tuple[dict[str, Value], dict]]:
        """(parameters, user attributes) of every trial, seed-major, references first."""
        return [
            (
                space.default_params(config.techniques),
                {
                    ledger.CONFIG: config.label,
                    ledger.SEED: seed,
                    ledger.BASELINE: config.label == "baseline",
                },
            )
            for seed in seeds
            for config in self.configs
        ]

    def attrs(self, seeds: Iterable[int]) -> dict[str, Any]:
        """The design as JSON, stored on the study so a report can rebuild its table."""
        combination = self.combination
        return {
            "design": self.name,
            "seeds": list(seeds),
            "references": list(self.references),
            "configs": [
                {"label": c.label, "techniques": sorted(c.techniques), "also": list(c.also)}
                for c in self.configs
            ],
            "combination": None
            if combination is None
            else {
                "techniques": list(combination.techniques),
                "rules": [
                    {"techniques": list(r.techniques), "kind": r.kind, "decision": r.decision}
                    for r in combination.rules
                ],
                "dropped": combination.dropped,
            },
            "excluded": self.excluded,
        }

    def describe(self, seeds: list[int], max_seeds: int | None = None) -> str:
        """What will be trained, for the terminal; with `max_seeds`, sequential seeds."""
        n, listed = len(self.configs), ", ".join(map(str, seeds))
        if max_seeds is None:
            size = f"{len(seeds)} seeds ({listed}) = {n * len(seeds)} trials"
        else:
            size = (
                f"{len(seeds)}..{max_seeds} seeds ({listed}, then one more a round where a "
                f"comparison is open) = {n * len(seeds)}..{n * max_seeds} trials"
            )
        lines = [f"design {self.name}: {n} configurations x {size}"]
        width = max(len(c.label) for c in self.configs)
        for c in self.configs:
            also = f"  (also {', '.join(c.also)})" if c.also else ""
            lines.append(f"  {c.label:{width}}  {' + '.join(_ordered(c.techniques)) or '-'}{also}")
        if self.combination is not None:
            lines.append(f"combination: {' + '.join(self.combination.techniques)}")
            for rule in self.combination.rules:
                lines.append(f"  rule {' x '.join(rule.techniques)}: {rule.decision}")
            for name, why in self.combination.dropped.items():
                lines.append(f"  left out {name}: {why}")
        for label, why in self.excluded.items():
            lines.append(f"excluded {label}: {why}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    """A label of a design compared with its reference. `trained` and `reference_trained` are
    the labels their trials carry: a configuration trained once under several labels
    carries the first."""

    label: str
    trained: str
    reference: str
    reference_trained: str


def reference_of(label: str, references: list[str]) -> str | None:
    """What a configuration is compared with: `full-x` with `full`; a reference with the
    first reference when there are several (`full` against `baseline`); the rest with the
    first reference."""
    if label.startswith("full-") and "full" in references:
        return "full"
    if label in references:
        return references[0] if label != references[0] else None
    return references[0]


def comparisons(design: Mapping[str, Any]) -> list[Comparison]:
    """Every comparison of a stored design (`Design.attrs`), in the order of its table."""
    trained_as = {
        label: c["label"] for c in design["configs"] for label in (c["label"], *c.get("also", ()))
    }
    found = []
    for label, trained in trained_as.items():
        reference = reference_of(label, list(design["references"]))
        if reference is not None:
            found.append(
                Comparison(label, trained, reference, trained_as.get(reference, reference))
            )
    return found


def searchable(space: Space) -> tuple[str, ...]:
    """The techniques the space switches, in registry order."""
    declared = space.techniques
    return tuple(n for n in registry.REGISTRY if n in declared and declared[n].switch == "search")


def conflict(space: Space, enabled: Iterable[str]) -> str | None:
    """Why the techniques `enabled` (plus those the space declares on) may not be combined,
    by the rules of `trainer/techniques/rules.py`; None when they may."""
    spec = space.replay(space.default_params(enabled))
    try:
        registry.build(spec.techniques)
    except ValueError as err:
        return str(err)
    return None


def combine(space: Space, candidates: Iterable[str]) -> Combination:
    """Add `candidates` in order, leaving out each one a rule forbids with those before it."""
    chosen: list[str] = []
    dropped: dict[str, str] = {}
    for name in candidates:
        why = conflict(space, [*chosen, name])
        if why is None:
            chosen.append(name)
        else:
            dropped[name] = why
    on = set(chosen) | {n for n, c in space.techniques.items() if c.switch == "on"}
    applied = tuple(r for r in rules.RULES if set(r.techniques) <= on)
    return Combination(tuple(chosen), applied, dropped)


def oat(space: Space) -> Design:
    """One at a time: the baseline, and the baseline with each searchable technique
    toggled alone (added, or removed when the baseline has it)."""
    base = frozenset(space.baseline) & set(searchable(space))
    configs = [Config("baseline", base)]
    for name in searchable(space):
        if name in base:
            configs.append(Config(f"-{name}", base - {name}))
        else:
            configs.append(Config(f"+{name}", base | {name}))
    return _checked(space, "oat", configs, ("baseline",))


def loo(space: Space) -> Design:
    """Leave one out: the full compatible combination, and it without each technique."""
    combination = combine(space, searchable(space))
    full = frozenset(combination.techniques)
    configs = [Config("full", full)] + [
        Config(f"full-{name}", full - {name}) for name in combination.techniques
    ]
    return _checked(space, "loo", configs, ("full",), combination)


def both(space: Space) -> Design:
    """The union of `oat` and `loo`, each configuration trained once."""
    one, out = oat(space), loo(space)
    return _checked(
        space,
        "both",
        [*one.configs, *out.configs],
        ("baseline", "full"),
        out.combination,
    )


def paper(space: Space) -> Design:
    """The paper's table: the baseline, each technique alone on it, the paper's combination
    on the baseline, and depthwise against plain 3x3 convolutions at equal parameters."""
    names = searchable(space)
    base = frozenset(space.baseline) & set(names)
    configs = [Config("baseline", base)]
    configs += [Config(f"+{n}", base | {n}) for n in names if n not in base]
    combination = combine(space, [*_ordered(base), *(n for n in PAPER if n in names)])
    configs.append(Config("paper", frozenset(combination.techniques)))
    if "depthwise" in base:
        configs.append(Config("-depthwise", base - {"depthwise"}))
    return _checked(space, "paper", configs, ("baseline",), combination)


BUILDERS = {"oat": oat, "loo": loo, "both": both, "paper": paper}


def make(space: Space, name: str) -> Design:
    """The design `name` on `space`; UsageError for an unknown design or a space with
    nothing to ablate."""
    if name not in BUILDERS:
        raise UsageError(f"unknown design {name!r}; accepted: {', '.join(DESIGNS)}")
    if not searchable(space):
        raise UsageError(
            f"space {space.name!r} switches no technique; declare at least one technique as "
            "`search` to ablate it"
        )
    return BUILDERS[name](space)


def seeds(first: int, count: int) -> list[int]:
    """The paired training seeds: `count` consecutive seeds from the study's seed."""
    if count < 1:
        raise UsageError(f"--seeds {count}: expected a positive number of seeds per configuration")
    return list(range(first, first + count))


def within_budget(
    design: Design, space: Space, in_shape: tuple[int, int, int], num_classes: int
) -> Design:
    """The design without the configurations that cannot meet the budget, which are
    reported in `excluded`: over it under `reject`, or, under `scale`, a configuration whose
    narrowest net (one channel per stage) is over it already. UsageError when a reference
    configuration is among them."""
    over: dict[str, str] = {}
    for config in design.configs:
        spec = space.replay(space.default_params(config.techniques))
        try:
            resolve_arch(spec, in_shape, num_classes)
        except BudgetError as err:
            over[config.label] = over_budget(err, space.budget_policy)
    lost = [r for r in design.references if r in over]
    if lost:
        raise UsageError(
            f"the reference configuration {lost[0]!r} cannot be trained: {over[lost[0]]}"
        )
    excluded = {**design.excluded, **{label: f"{why} to train it" for label, why in over.items()}}
    kept = tuple(c for c in design.configs if c.label not in excluded)
    return replace(design, configs=kept, excluded=excluded)


def _ordered(names: Iterable[str]) -> list[str]:
    return [n for n in registry.REGISTRY if n in set(names)]


def _checked(
    space: Space,
    name: str,
    configs: list[Config],
    references: tuple[str, ...],
    combination: Combination | None = None,
) -> Design:
    """Merge configurations with the same techniques (the first label keeps the trials),
    and exclude those the compatibility rules forbid."""
    merged: dict[frozenset[str], Config] = {}
    for config in configs:
        first = merged.get(config.techniques)
        if first is None:
            merged[config.techniques] = config
        elif config.label != first.label and config.label not in first.also:
            merged[config.techniques] = replace(
                first, also=(*first.also, config.label, *config.also)
            )
    excluded: dict[str, str] = {}
    kept = []
    for config in merged.values():
        why = conflict(space, config.techniques)
        if why is None:
            kept.append(config)
        else:
            excluded[config.label] = f"incompatible: {why}"
    lost = [r for r in references if r in excluded]
    if lost:
        raise UsageError(f"the {lost[0]} configuration is not valid: {excluded[lost[0]]}")
    return Design(name, tuple(kept), references, combination, excluded)
