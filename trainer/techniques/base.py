"""What every technique declares, and the fixed slots of the training loop it may fill.

A technique is one class: its name, kind, hyperparameters (with defaults and search
ranges) and the slot methods it overrides. The loop in `trainer/train.py` calls the slots
in a fixed order, so where two techniques meet, a rule in `rules.py` decides the outcome,
never the order in which code happens to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from trainer.spec import ArchSpec, Value

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainer.models.net import Net

# "inference": changes how the trained network predicts, and so what it costs to deploy.
Kind = Literal["architecture", "training", "inference"]

# The forward and backward pass of one step of a group (trainer/train.py): every member's
# loss on its own batch at its current weights, summed for one backward pass, so each
# member's gradient is that of its own loss. Returns the members' losses (K,), detached.
ForwardBackward = Callable[[], "torch.Tensor"]

# The loop's slots, each named by the `Technique` method that fills it (see `fills`).
SLOT_ARCH = "configure_arch"
SLOT_BATCH = "batch"
SLOT_STEP = "step"
SLOT_SCHEDULE = "make_scheduler"
SLOT_AVERAGING = "averaging_start"  # an averaging phase owning the learning rate (SWA)
SLOT_AFTER_STEP = "after_step"  # per member, after each optimiser step (weight EMA)
SLOT_FINALIZE = "finalize"  # the model evaluated: the one averager's (SWA, EMA)
SLOT_INFERENCE = "inference"  # the network as deployed (flip test-time augmentation)


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its default and the range a search may draw it from.

    Exactly one of (`low`, `high`) or `choices` describes the range. `searched=False`: a
    space that does not declare it uses the default instead of searching the range (for a
    value the paper fixes). A range that depends on another hyperparameter of the same
    technique is built with `Hyper.conditional`.
    """

    name: str
    default: Value
    low: float | None = None
    high: float | None = None
    choices: tuple[Value, ...] | None = None
    log: bool = False
    integer: bool = False
    doc: str = ""
    searched: bool = True
    # Conditional range: the name of the hyperparameter it depends on (declared before it),
    # and for each of that one's values the Hyper that applies.
    given: str | None = None
    cases: tuple[tuple[Value, Hyper], ...] = ()

    def __post_init__(self) -> None:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise TypeError(f"hyper {self.name!r}: give either low and high, or choices")
        self.check(self.default)

    @classmethod
    def conditional(
        cls, name: str, given: str, cases: tuple[tuple[Value, Hyper], ...], doc: str = ""
    ) -> Hyper:
        """A hyperparameter whose range and default depend on the value of `given`; it
        reads as its first case wherever that value is unknown."""
        first = cases[0][1]
        return replace(first, name=name, doc=doc, given=given, cases=cases)

    def branch(self, value: Value) -> Hyper:
        """The plain Hyper that applies when `given` has `value` (itself if unconditional)."""
        for case, hyper in self.cases:
            if case == value and type(case) is type(value):
                return replace(hyper, name=self.name)
        if self.given is None:
            return self
        raise ValueError(f"{self.name}: no range for {self.given} = {value!r}")

    def describe(self) -> str:
        """The accepted values, as shown in messages and in `search techniques`."""
        if self.cases:
            return "; ".join(f"{h.describe()} if {self.given} = {v!r}" for v, h in self.cases)
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "integer" if self.integer else "number"
        return f"{kind} in [{self.low:g}, {self.high:g}]" + (" (log scale)" if self.log else "")

    def check(self, value: object) -> Value:
        """Return `value` if it is accepted, else raise ValueError naming what is."""
        if self.choices is not None:
            if value in self.choices and type(value) is type(self.choices[0]):
                return value  # type: ignore[return-value]
        elif isinstance(value, bool):
            pass
        elif (isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))) and (
            self.low <= value <= self.high  # type: ignore[operator]
        ):  # the range first: an integer of 4,000 digits has no float
            if self.integer and not float(value).is_integer():
                raise ValueError(f"{self.name} = {value!r}: expected {self.describe()}")
            return int(value) if self.integer else float(value)
        raise ValueError(f"{self.name} = {value!r}: expected {self.describe()}")


class StepMember(NamedTuple):
    """One member of a group as the step slot sees it: its own step-owning technique (None
    when no technique owns its step), network and optimiser."""

    technique: Technique | None
    model: nn.Module
    optimizer: torch.optim.Optimizer


class Technique:
    """Base class: one configured technique. Subclasses override only the slots they fill.

    Slots, in the order the loop calls them:
      - `configure_arch`: architecture techniques rewrite the architecture spec;
        `absent_from` then says what the built network lacks of the technique, if anything,
        and `hypers_for` bounds a hyperparameter's range by the architecture.
      - `batch`: training techniques transform a normalised batch and its soft targets.
      - `step`: the one technique owning the optimisation step (SAM) replaces it.
      - `make_scheduler`: the one technique owning the learning rate schedule (one-cycle).
      - `averaging_start`, `averaging_scheduler`, `after_epoch`: an averaging phase (SWA),
        which owns the learning rate from its first averaging epoch on.
      - `after_step`: called per member after each of its optimiser steps (weight EMA).
      - `finalize`: the one averager (SWA, EMA) returns the model to evaluate and save.
      - `inference`: wraps the final model as deployed (flip TTA); what is evaluated,
        timed and counted, while the weights saved are the wrapped model's.

    A technique that keeps state across epochs also returns it from `state_dict` and takes
    it back in `load_state_dict`, so that an interrupted trial resumes where it stopped
    (trainer/checkpoint.py).
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    summary: ClassVar[str]
    source: ClassVar[str]  # the paper it follows
    hypers: ClassVar[tuple[Hyper, ...]] = ()
    # Position among batch transforms; lower runs first. See rules.py for why each is where it is.
    batch_order: ClassVar[int] = 0
    # Whether it feeds the network horizontally flipped images, so is valid only where the
    # space declares that flips preserve labels (`data.flip_invariant`; not for digits).
    flips_images: ClassVar[bool] = False

    def __init__(self, **params: Value) -> None:
        known = {h.name: h for h in self.hypers}
        unknown = sorted(set(params) - set(known))
        if unknown:
            accepted = ", ".join(known) or "none"
            raise ValueError(
                f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; accepted: {accepted}"
            )
        self.params: dict[str, Value] = {}
        for h in self.hypers:  # in order: a conditional range reads the value it depends on
            hyper = h.branch(self.params[h.given]) if h.given else h
            self.params[h.name] = hyper.check(params[h.name]) if h.name in params else hyper.default

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # -- architecture slot -------------------------------------------------------------
    def configure_arch(self, arch: ArchSpec) -> ArchSpec:
        return arch

    def absent_from(self, model: Net) -> str | None:
        """Why the built network does not contain this technique's blocks, or None if it
        does. A technique that is on must do what it names, for every value in its range."""
        return None

    @classmethod
    def hypers_for(cls, arch: ArchSpec) -> tuple[Hyper, ...]:
        """The hyperparameters with their ranges bounded by `arch` (where the registered
        range would reach values that build nothing on it)."""
        return cls.hypers

    # -- training slots ----------------------------------------------------------------
    def batch(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform a normalised float batch (N, C, H, W) and its soft targets (N, K)."""
        return x, targets

    def step(self, group: Sequence[StepMember], forward_backward: ForwardBackward) -> torch.Tensor:
        """One optimisation step of every member of `group` on its current batch, whose
        losses `forward_backward()` computes; returns them at the current weights (K,).

        Called on the first member's technique; by the grouping rule (trainer/group.py) every
        member's step is owned by this same technique, each instance with the member's own
        hyperparameters. A group of one is the trial alone."""
        raise NotImplementedError

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """A scheduler stepped once per optimiser step, for exactly `total_steps` steps."""
        raise NotImplementedError

    def averaging_start(self, epochs: int) -> int:
        """The first epoch (0-based) of the averaging phase; from there this technique owns
        the learning rate and `after_epoch` is called at the end of every epoch."""
        raise NotImplementedError

    def averaging_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """The scheduler of the averaging phase, stepped once per optimiser step."""
        raise NotImplementedError

    def after_epoch(self, model: nn.Module) -> None:
        """Called at the end of every epoch of the averaging phase."""

    def after_step(self, model: nn.Module) -> None:
        """Called with the member's network after each of its optimiser steps (one per SAM
        update), before its scheduler steps."""

    def finalize(
        self,
        model: nn.Module,
        clean_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    ) -> nn.Module:
        """Return the model to evaluate; `clean_batches()` yields un-augmented train batches."""
        return model

    def inference(self, model: nn.Module) -> nn.Module:
        """The trained `model` as deployed: a module wrapping it, evaluated and measured."""
        return model

    # -- checks ------------------------------------------------------------------------
    def too_short(self, steps: int) -> str | None:
        """Why this technique cannot do what it names in a trial of `steps` optimiser steps,
        or None; a trial it refuses ends before training, with this reason."""
        return None

    # -- resuming ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state this technique carries from one epoch to the next, as tensors and plain
        values (a checkpoint is loaded with `weights_only=True`); empty for none."""
        return {}

    def load_state_dict(self, state: dict[str, Any], model: nn.Module) -> None:
        """Take back what `state_dict` returned (empty: nothing saved yet). `model` is the
        trial's freshly built network, for state shaped like it."""

    # Which slots a subclass fills, read off the methods it overrides.
    @classmethod
    def fills(cls, slot: str) -> bool:
        return getattr(cls, slot) is not getattr(Technique, slot)


def owner(techniques: Iterable[Technique], slot: str) -> Technique | None:
    """The technique filling the single-owner `slot`, if any (`build` rejects two owners)."""
    return next((t for t in techniques if t.fills(slot)), None)


def deployed(model: nn.Module, techniques: Iterable[Technique]) -> nn.Module:
    """`model` as it predicts once deployed: wrapped by the inference slot's owner (flip TTA
    evaluates each image and its mirror), else `model` itself. Accuracy, latency and FLOPs
    are measured on this; the weights saved are `model`'s."""
    wrapper = owner(techniques, SLOT_INFERENCE)
    return wrapper.inference(model) if wrapper else model
