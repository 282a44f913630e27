"""Cross-checks of a valid space against the data it will train on, run before a study
starts: every network the space can propose builds on these images (`check_build`), its
baseline fits every budget level (`check_budget`), and every training technique can do its
job in the fewest steps a trial takes (`check_length`).

They need the image shape and class count, known only once the data set is read, so they
are apart from the schema (`spaces.schema`), which checks the space file alone.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from spaces.errors import SpaceError
from spaces.space import TRAIN_PREFIX, Space
from trainer.budget import BudgetError, resolve_arch
from trainer.models.net import BuildError
from trainer.spec import TrialSpec
from trainer.techniques import REGISTRY, rules
from trainer.techniques.base import Technique
from trainer.train import full_batches


def check_build(space: Space, in_shape: tuple[int, int, int], num_classes: int) -> None:
    """Build, on the meta device, the networks the space can propose on these images: each
    architecture technique at every value of its hyperparameters (every integer, every
    choice, both ends of a float range), once with only the always-on techniques beside
    it and once with every declared one. Refuse the space if one cannot be built, or
    leaves a technique that is on with nothing to do.

    Which blocks exist depends on each technique alone and on the model, not on pairs of
    techniques, so this covers the space without building every combination (~0.1 s each).
    A technique that requires another (rules.py) is built with that one on, at its defaults.
    """
    declared = {
        name: choice
        for name, choice in space.techniques.items()
        if REGISTRY[name].kind == "architecture" and choice.switch != "off"
    }
    defaults = {n: {h: r.default() for h, r in c.hypers.items()} for n, c in declared.items()}
    always = {n: p for n, p in defaults.items() if declared[n].switch == "on"}
    points = [
        (name, dict(zip(choice.hypers, values, strict=True)))
        for name, choice in declared.items()
        for values in itertools.product(*(r.grid() for r in choice.hypers.values()))
    ]
    # Alone first, so a failure names the value that causes it; the message names only that
    # value, so that it stays one short line however many techniques are on beside it.
    beside = "with the always-on techniques" if always else "alone"
    configs = [(always, "the always-on techniques", "")]
    configs += [({**always, n: p}, _named(n, p), beside) for n, p in points]
    configs += [({**defaults, n: p}, _named(n, p), "with every declared one") for n, p in points]
    seen: set[str] = set()
    for config, what, company in configs:  # the schema saw every requirement declared
        needed = {r: defaults[r] for n in config for r in rules.requirements(n) if r not in config}
        techniques = {**needed, **config}
        if repr(techniques) in seen:
            continue
        seen.add(repr(techniques))
        spec = TrialSpec(arch=space.arch, train=space.train, techniques=techniques, budget=None)
        try:
            resolve_arch(spec, in_shape, num_classes)
        except BuildError as err:
            image = "x".join(map(str, in_shape))
            with_ = f" {company}" if company else ""
            raise SpaceError(f"{space.name}: {what}{with_} on {image} images: {err}") from None


def _named(name: str, params: dict[str, object]) -> str:
    """`blurpool.size = 2`, or `gap` for a technique without hyperparameters."""
    return ", ".join(f"{name}.{h} = {v!r}" for h, v in params.items()) or name


def over_budget(err: BudgetError, policy: str) -> str:
    """Why a configuration misses its budget under `policy`, and the budget that would fit
    it; never "use policy scale" where that is the policy already."""
    if err.needs is None:  # no fit in the 2% window, or beyond what widening reaches
        return f"{err} under policy {policy}; choose another budget.params"
    remedy = f"raise budget.params to at least {err.needs:,}"
    if policy != "scale":
        remedy += " or use budget.policy: scale"
    return f"{err} under policy {policy}; {remedy}"


def check_budget(space: Space, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Fit the baseline configuration to the budget, on the data's shape, before anything
    starts: a budget nothing can fit would otherwise reject every trial of a running study."""
    baseline = space.replay(space.baseline_params())
    for level in space.budgets:
        try:
            resolve_arch(replace(baseline, budget=level), image_shape, num_classes)
        except BudgetError as err:
            raise SpaceError(
                f"budget.params = {level}: the baseline configuration cannot fit it: "
                f"{over_budget(err, space.budget_policy)}"
            ) from None


def fewest_steps(space: Space, train_images: int, *, searched: bool = True) -> int:
    """The fewest optimiser steps a trial of `space` takes on `train_images` images: its
    shortest epochs at its largest batch, full batches only, as the trainer steps. With
    `searched` false, the recipe at its defaults, as a designed study trains it."""
    epochs, batch = [space.train.epochs], [space.train.batch_size]
    for field in space.recipe if searched else ():
        values = field.range.choices or (field.range.low, field.range.high)
        if field.name == f"{TRAIN_PREFIX}epochs":
            epochs += [int(v) for v in values]  # type: ignore[arg-type]
        elif field.name == f"{TRAIN_PREFIX}batch_size":
            batch += [int(v) for v in values]  # type: ignore[arg-type]
    return min(epochs) * full_batches(train_images, max(batch))


def check_length(space: Space, train_images: int, *, searched: bool = True) -> None:
    """Refuse a space whose techniques cannot do their job in the shortest trial it can
    train (`Technique.too_short`), at every value of their hyperparameters, before anything
    trains: such a trial would report numbers of something else (an EMA of decay 0.999 over
    170 steps is mostly its first step's weights, and scored 18% where its network had 55%)."""
    steps = fewest_steps(space, train_images, searched=searched)
    for name, choice in space.techniques.items():
        if choice.switch == "off" or REGISTRY[name].too_short is Technique.too_short:
            continue  # only what can be too short is built (SAM's rho hangs on adaptive)
        for values in itertools.product(*(r.grid() for r in choice.hypers.values())):
            params = dict(zip(choice.hypers, values, strict=True))
            reason = REGISTRY[name](**params).too_short(steps)
            if reason is not None:
                raise SpaceError(
                    f"{space.name}: its shortest trial takes {steps:,} optimiser steps "
                    f"({train_images:,} training images): {reason}"
                )
