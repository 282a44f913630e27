"""Budget-matched width scaling: every configuration is compared at the same model size.

A technique that adds parameters (SE) must pay for them with width, and one that saves
them (depthwise, GAP) gets width back, or an ablation compares sizes instead of techniques.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from trainer import techniques as registry
from trainer.measure import count_params, meta_model
from trainer.models.net import BuildError, stage_channels
from trainer.spec import ArchSpec, TrialSpec

POLICIES = ("scale", "reject")


class BudgetError(BuildError):
    """A configuration that cannot be brought within its parameter budget; `needs`, where
    known, is the smallest budget it fits, so a message can say what to raise it to."""

    def __init__(self, message: str, needs: int | None = None):
        super().__init__(message)
        self.needs = needs


@dataclass(frozen=True)
class Fit:
    arch: ArchSpec
    params: int


def params_of(arch: ArchSpec, in_shape: tuple[int, int, int], num_classes: int) -> int:
    return count_params(meta_model(arch, in_shape, num_classes))


def corrections(n: int, max_delta: int) -> Iterator[tuple[int, ...]]:
    """Per-stage channel corrections for `n` stages (stem first), smallest changes first:
    one or two stages by up to `max_delta` each, then three or more stages by up to 2 each.

    The wider search matters only for nets a few channels wide, where every stage's channel
    moves the count by more than the window (a 7x7 map before a flatten head: ~500 per
    channel); there most corrections clamp to one channel and repeat an earlier count.
    """
    steps = [d for d in range(-max_delta, max_delta + 1) if d]
    for k in range(1, n + 1):
        for stages in itertools.combinations(range(n), k):
            for deltas in itertools.product(steps if k <= 2 else (-2, -1, 1, 2), repeat=k):
                delta = [0] * n
                for s, d in zip(stages, deltas, strict=True):
                    delta[s] = d
                yield tuple(delta)


def fit_to_budget(
    arch: ArchSpec,
    in_shape: tuple[int, int, int],
    num_classes: int,
    budget: int,
    *,
    tolerance: float = 0.02,
    max_delta: int = 3,
) -> Fit:
    """Scale `arch` so its parameter count lands in [budget * (1 - tolerance), budget].

    First a bisection on the width multiplier finds the widest uniform scaling within the
    budget. Channel counts are integers, so at 1.5K parameters one channel more can cost
    100 parameters, more than the 2% window; a search over small per-stage channel
    corrections (`corrections`: one or two stages by up to `max_delta`, then more stages by
    up to 2) then takes the first count inside the window, else refuses with the closest.
    """

    counted: dict[tuple[int, ...], int] = {}

    def count(a: ArchSpec) -> int:
        # Many widths round to the same channel counts: build each network only once.
        key = tuple(stage_channels(a))
        if key not in counted:
            counted[key] = params_of(a, in_shape, num_classes)
        return counted[key]

    base = replace(arch, width=1.0, channel_delta=())
    low, high = 0.0, 1.0
    while count(replace(base, width=high)) <= budget:  # grow until the budget is exceeded
        low, high = high, high * 2
        if high > 1024:
            raise BudgetError(f"the network cannot reach {budget:,} parameters by widening")
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if count(replace(base, width=mid)) <= budget else (low, mid)
    if low == 0.0:
        smallest = count(replace(base, width=1e-9))
        raise BudgetError(
            f"even its narrowest net (one channel per stage) has {smallest:,} parameters, "
            f"over the budget of {budget:,}",
            needs=smallest,
        )
    scaled = replace(base, width=low)
    n = len(arch.stages) + 1
    best = Fit(scaled, count(scaled))
    lower = budget * (1 - tolerance)
    if best.params >= lower:
        return best
    for delta in corrections(n, max_delta):
        candidate = replace(scaled, channel_delta=delta)
        params = count(candidate)
        if best.params < params <= budget:
            best = Fit(candidate, params)
            if params >= lower:
                return best
    raise BudgetError(
        f"the closest fit has {best.params:,} parameters, outside [{lower:,.0f}, {budget:,}]"
    )


def resolve_arch(spec: TrialSpec, in_shape: tuple[int, int, int], num_classes: int) -> Fit:
    """The architecture a trial trains: rewritten by its architecture techniques, checked to
    contain what each of them names, then fitted to its budget. Deterministic, so the search
    driver and the trial agree, and the driver can refuse a configuration that cannot be
    built (BuildError) or is over the budget (BudgetError, a BuildError) before training."""
    try:
        techniques = registry.build(spec.techniques)
    except ValueError as err:
        raise BuildError(str(err)) from None
    arch = spec.arch
    for technique in techniques:
        arch = technique.configure_arch(arch)
    # Width does not change which blocks exist, so the unscaled network stands for every fit.
    model = meta_model(arch, in_shape, num_classes)
    for technique in techniques:
        problem = technique.absent_from(model)
        if problem:
            raise BuildError(f"{technique.name} is on but builds nothing of its own: {problem}")
    if spec.budget is None:
        return Fit(arch, count_params(model))
    if spec.budget_policy == "scale":
        return fit_to_budget(arch, in_shape, num_classes, spec.budget)
    if spec.budget_policy != "reject":
        raise ValueError(f"budget policy {spec.budget_policy!r}: expected one of {POLICIES}")
    params = count_params(model)
    if params > spec.budget:
        raise BudgetError(
            f"{params:,} parameters, over the budget of {spec.budget:,}", needs=params
        )
    return Fit(arch, params)


def resolve_archs(
    specs: Sequence[TrialSpec], in_shape: tuple[int, int, int], num_classes: int
) -> list[ArchSpec]:
    """`resolve_arch(spec, ...).arch` of each spec. A fit depends on the architecture, the
    techniques and the budget only, so specs that differ in seed or training settings share
    one (fitting a CIFAR-10 net to its budget takes about a second)."""
    fits: dict[str, ArchSpec] = {}
    archs = []
    for spec in specs:
        fit = repr((spec.arch, spec.techniques, spec.budget, spec.budget_policy))
        if fit not in fits:
            fits[fit] = resolve_arch(spec, in_shape, num_classes).arch
        archs.append(fits[fit])
    return archs
