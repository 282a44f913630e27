"""The schema of a space file: `parse` checks each section of the loaded mapping (data,
model, budget, train, search, techniques, protocol): every key known, every value in range,
or one `SpaceError` that names the file, the key, the value (shortened) and what is accepted.

It reads the mapping alone: finding and reading the file is `spaces.files`; what needs the
data's image shape (does every network build, does the baseline fit the budget) is
`spaces.checks`. The technique section is checked against the technique registry, so a new
technique is searchable as soon as it is registered.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from spaces.errors import SpaceError, show
from spaces.space import (
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    SWITCHES,
    DataChoice,
    Expected,
    HyperRange,
    Protocol,
    PrunerChoice,
    RecipeRange,
    Space,
    TechniqueChoice,
    stage_param,
    with_stage_ratio,
)
from trainer.budget import POLICIES
from trainer.schedule import MAX_WARMUP, SCHEDULES
from trainer.spec import ArchSpec, StageSpec, TrainSpec
from trainer.techniques import REGISTRY, rules
from trainer.techniques.base import Hyper

MAX_BUDGET = 10**10  # parameters; beyond, no network of this tool is buildable
# Names become paths (runs/weights/<study>/): a safe character set, no leading dot.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "1-100 characters A-Z a-z 0-9 . _ -, starting with a letter or digit"
MAX_STAGES = 32
MAX_SIDE = 1024  # data.resize: larger images are not what an efficient-CNN search trains on
MAX_PATH = 4096
MAX_CHANNELS = 4096

# The recipe's fields, with what each accepts, fixed or searched; undeclared, TrainSpec's
# default. `model.stage_ratio` undeclared: the stages keep their declared channels.
_TRAIN = TrainSpec()
TRAIN_FIELDS = (
    Hyper("epochs", _TRAIN.epochs, low=1, high=10_000, integer=True),
    Hyper("batch_size", _TRAIN.batch_size, low=1, high=65_536, integer=True),
    Hyper("lr", _TRAIN.lr, low=1e-6, high=10.0),
    Hyper("momentum", _TRAIN.momentum, low=0.0, high=0.999),
    Hyper("weight_decay", _TRAIN.weight_decay, low=0.0, high=0.1),
    Hyper("nesterov", _TRAIN.nesterov, choices=(False, True)),
    Hyper("schedule", _TRAIN.schedule, choices=SCHEDULES),
    Hyper("warmup_fraction", _TRAIN.warmup_fraction, low=0.0, high=MAX_WARMUP),
    Hyper("no_wd_bn_bias", _TRAIN.no_wd_bn_bias, choices=(False, True)),
    Hyper("crop_padding", _TRAIN.crop_padding, low=0, high=16, integer=True),
    Hyper("flip", _TRAIN.flip, choices=(False, True)),
)
STAGE_RATIO = Hyper("stage_ratio", 1.0, low=0.25, high=4.0)
# Per-stage fields a space may search like a recipe field (`model.stages[i].blocks`).
STAGE_BLOCKS = Hyper("blocks", 1, low=1, high=16, integer=True)
STAGE_KERNEL = Hyper("kernel", 3, choices=(3, 5, 7))


def check_name(name: object, what: str) -> str:
    """`name` if it is safe as a file name, else a `SpaceError` saying what is accepted."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SpaceError(f"{what} = {show(name)}: expected {NAME_RULE}")
    return name


def _key_text(key: object) -> str:
    if isinstance(key, bool):  # YAML 1.1 reads a bare on/off/yes/no/true/false as a bool
        return f"{show(key)} (a bare {'on/yes/true' if key else 'off/no/false'})"
    return show(key, 40)


class _Reader:
    """Walks one mapping, remembering the key path for messages and refusing unknown keys."""

    def __init__(self, raw: Any, where: str, path: str):
        if not isinstance(raw, dict):
            raise SpaceError(f"{where}: {path or 'the file'} must be a mapping, got {show(raw)}")
        self.raw, self.where, self.path = raw, where, path

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, value: Any, expected: str) -> SpaceError:
        return SpaceError(f"{self.where}: {self._key(key)} = {show(value)}: expected {expected}")

    def only(self, *keys: str) -> None:
        unknown = sorted(set(self.raw) - set(keys), key=str)
        if unknown:
            raise SpaceError(
                f"{self.where}: unknown key(s) {', '.join(map(_key_text, unknown[:3]))}"
                f"{', ...' if len(unknown) > 3 else ''} in {self.path or 'the top level'}; "
                f"accepted: {', '.join(keys)}"
            )

    def section(self, key: str, required: bool = True) -> _Reader:
        if key not in self.raw:
            if required:
                raise SpaceError(f"{self.where}: missing section {self._key(key)!r}")
            return _Reader({}, self.where, self._key(key))
        return _Reader(self.raw[key], self.where, self._key(key))

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        *,
        low=None,
        high=None,
        choices: tuple[Any, ...] | None = None,
    ) -> Any:
        if key not in self.raw:
            if default is ...:
                raise SpaceError(f"{self.where}: missing key {self._key(key)!r}")
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, value, " or ".join(k.__name__ for k in kinds))
        if value is None and default is None:
            return None
        if not isinstance(value, kinds):
            raise self.fail(key, value, " or ".join(k.__name__ for k in kinds))
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, value, "a finite number")
        if choices is not None and value not in choices:
            raise self.fail(key, value, "one of " + ", ".join(map(repr, choices)))
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(key, value, f"a value in [{low}, {high}]")
        return value


def _hyper_range(
    reader: _Reader, hyper: Hyper, earlier: dict[str, HyperRange], extra: tuple[str, ...] = ()
) -> HyperRange:
    """A hyperparameter as declared: a scalar fixes it, a list gives choices, a mapping
    {low, high, log} a range; each inside the registered range. Omitted: the registered range
    (or its default, for one the paper fixes). A conditional one follows the hyperparameter
    it depends on: one range per value that one may take, declared only once that is fixed."""
    if hyper.given is not None:
        depends = earlier[hyper.given]
        if depends.fixed is not None:
            hyper = hyper.branch(depends.fixed)
        elif hyper.name in reader.raw:
            raise reader.fail(
                hyper.name,
                reader.raw[hyper.name],
                f"no declaration while {hyper.given} is searched (its range depends on it, "
                f"see `search techniques`); fix {hyper.given} to declare it",
            )
        else:
            return HyperRange(
                hyper,
                cases=tuple(
                    (v, _hyper_range(reader, hyper.branch(v), earlier)) for v in depends.grid()
                ),
            )
    if hyper.name not in reader.raw:
        if not hyper.searched:
            return HyperRange(hyper, fixed=hyper.default)
        if hyper.choices is not None:
            return HyperRange(hyper, choices=hyper.choices)
        return HyperRange(hyper, low=hyper.low, high=hyper.high, log=hyper.log)
    value = reader.raw[hyper.name]

    def check(v: Any) -> Any:
        try:
            return hyper.check(v)
        except ValueError:
            raise reader.fail(hyper.name, v, hyper.describe()) from None

    if isinstance(value, list):
        if not value:
            raise reader.fail(hyper.name, value, "a non-empty list of choices")
        return HyperRange(hyper, choices=tuple(check(v) for v in value))
    if isinstance(value, dict):
        if hyper.choices is not None:
            raise reader.fail(hyper.name, value, f"a value or list of values, {hyper.describe()}")
        sub = reader.section(hyper.name)
        sub.only("low", "high", "log", *extra)
        low, high = check(sub.get("low", (int, float))), check(sub.get("high", (int, float)))
        if low > high:
            raise reader.fail(hyper.name, value, "low <= high")
        log = sub.get("log", bool, hyper.log)
        if log and low <= 0:
            raise reader.fail(hyper.name, value, "low > 0 on a log scale (or log: false)")
        return HyperRange(hyper, low=low, high=high, log=log)
    return HyperRange(hyper, fixed=check(value))


def _recipe_field(
    reader: _Reader,
    hyper: Hyper,
    kind: type | tuple[type, ...],
    default: Any,
    param: str | None = None,
) -> tuple[Any, RecipeRange | None]:
    """A recipe field (`train.lr`, `model.stage_ratio`, a stage's `blocks`) as declared: a
    scalar fixes it; a list gives choices and a mapping {low, high, log, default} a range,
    as for a technique's hyperparameter. Returns the value the baseline trains, and the
    range when searched, as the trial parameter `param` (default: the key's path)."""
    value = reader.raw.get(hyper.name)
    if not isinstance(value, list | dict):
        return reader.get(
            hyper.name, kind, default, low=hyper.low, high=hyper.high, choices=hyper.choices
        ), None
    hyper_range = _hyper_range(reader, hyper, {}, extra=("default",))
    declared = None
    if isinstance(value, dict) and "default" in value:
        key, declared = f"{hyper.name}.default", value["default"]
        try:
            declared = hyper.check(declared)
        except ValueError:
            raise reader.fail(key, declared, hyper.describe()) from None
        if not hyper_range.low <= declared <= hyper_range.high:  # type: ignore[operator]
            raise reader.fail(key, declared, f"a value in the range {hyper_range.describe()}")
    recipe = RecipeRange.of(param or f"{reader.path}.{hyper.name}", hyper_range, declared)
    return recipe.default, recipe


def _switch(value: object) -> object:
    """YAML 1.1 reads a bare on/off as true/false: take them as the switches they spell."""
    if value is None:
        return "search"
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def _technique(reader: _Reader, name: str, arch: ArchSpec) -> TechniqueChoice:
    cls = REGISTRY[name]
    hypers = cls.hypers_for(arch)
    value = _switch(reader.raw[name])
    if not isinstance(value, str | dict):
        keys = "".join(f", {h.name}" for h in hypers)
        raise reader.fail(
            name, value, f"one of {', '.join(SWITCHES)}, or a mapping {{enabled{keys}}}"
        )
    if isinstance(value, str):
        if value not in SWITCHES:
            raise reader.fail(name, value, f"one of {', '.join(SWITCHES)}, or a mapping")
        switch = value
        sub = _Reader({}, reader.where, f"{reader.path}.{name}")
    else:
        sub = reader.section(name)
        sub.only("enabled", *(h.name for h in hypers))
        if "enabled" in sub.raw:
            sub.raw = {**sub.raw, "enabled": _switch(sub.raw["enabled"])}
        switch = sub.get("enabled", str, "search", choices=SWITCHES)
        if switch == "off" and len(sub.raw) > 1:
            raise SpaceError(
                f"{reader.where}: {sub.path} is 'off' but declares hyperparameters "
                f"{', '.join(k for k in sub.raw if k != 'enabled')}: remove them or enable it"
            )
    ranges: dict[str, HyperRange] = {}
    for hyper in hypers:  # in order: a conditional range reads the one it depends on
        ranges[hyper.name] = _hyper_range(sub, hyper, ranges)
    return TechniqueChoice(name, switch, ranges)


def _stages(reader: _Reader, ratio: bool) -> tuple[tuple[StageSpec, ...], list[RecipeRange]]:
    """The declared stages, and their searched fields; with a stage `ratio`, only the first
    declares its channels (the others' are set from it by `with_stage_ratio`). A stage's
    `blocks` and `kernel` are declared as a recipe field is: a scalar, choices or a range."""
    raw = reader.raw.get("stages")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STAGES:
        raise reader.fail(
            "stages", raw, f"a list of 1 to {MAX_STAGES} {{channels, blocks, downsample, kernel}}"
        )
    stages, searched = [], []
    for i, item in enumerate(raw):
        stage = _Reader(item, reader.where, f"{reader.path}.stages[{i}]")
        stage.only("channels", "blocks", "downsample", "kernel")
        by_ratio = ratio and i > 0  # its channels are set by `with_stage_ratio`
        if by_ratio and "channels" in stage.raw:
            raise stage.fail(
                "channels",
                stage.raw["channels"],
                "no declaration: model.stage_ratio sets it (stages[0].channels * ratio**i)",
            )
        blocks, blocks_range = _recipe_field(
            stage, STAGE_BLOCKS, int, STAGE_BLOCKS.default, stage_param(i, "blocks")
        )
        kernel, kernel_range = _recipe_field(
            stage, STAGE_KERNEL, int, None, stage_param(i, "kernel")
        )
        searched += [r for r in (blocks_range, kernel_range) if r is not None]
        stages.append(
            StageSpec(
                channels=1 if by_ratio else stage.get("channels", int, low=1, high=MAX_CHANNELS),
                blocks=blocks,
                downsample=stage.get("downsample", bool, True),
                kernel=kernel,
            )
        )
    return tuple(stages), searched


def _check_flips(
    techniques: _Reader, choices: dict[str, TechniqueChoice], data: DataChoice
) -> None:
    """A technique that feeds mirrored images only where the space says mirrors keep labels."""
    for name, choice in choices.items():
        if REGISTRY[name].flips_images and choice.switch != "off" and not data.flip_invariant:
            raise techniques.fail(
                name,
                techniques.raw[name],
                "off unless data.flip_invariant is true (it predicts from mirrored images; "
                "declare it only for data whose labels survive a left-right flip, not digits)",
            )


def _check_warmup(train: _Reader, choices: dict[str, TechniqueChoice]) -> None:
    """A warm-up declared where one-cycle is always on would never act
    (`trainer.schedule.WARMUP_RULE`)."""
    one_cycle = choices.get("one_cycle")
    if one_cycle is not None and one_cycle.switch == "on" and train.raw.get("warmup_fraction"):
        raise train.fail(
            "warmup_fraction",
            train.raw["warmup_fraction"],
            "no declaration while techniques.one_cycle is on: it warms up by its own "
            "pct_start and replaces the base schedule (`search techniques`)",
        )


def _check_ratio(model: _Reader, arch: ArchSpec, ratios: tuple[Any, ...]) -> None:
    """Every stage ratio the space may train keeps every stage within MAX_CHANNELS."""
    first, last = arch.stages[0].channels, len(arch.stages) - 1
    widest = first * max(1.0, *ratios) ** last
    if widest > MAX_CHANNELS:
        largest = (MAX_CHANNELS / first) ** (1 / last)
        raise model.fail(
            "stage_ratio",
            model.raw["stage_ratio"],
            f"at most {largest:.3g} with {last + 1} stages from {first} channels "
            f"(stage i has stages[0].channels * ratio**i, at most {MAX_CHANNELS})",
        )


def _protocol(top: _Reader) -> Protocol | None:
    """`protocol: {version[, expected: {epochs, accuracy, tolerance[, train_images]}]}`, or
    None if absent. `expected` is optional: only the shipped presets must state it."""
    if "protocol" not in top.raw:
        return None
    protocol = top.section("protocol")
    protocol.only("version", "expected")
    version = protocol.get("version", int, low=1, high=1000)
    if "expected" not in protocol.raw:
        return Protocol(version)
    expected = protocol.section("expected")
    expected.only("epochs", "accuracy", "tolerance", "train_images")
    return Protocol(
        version,
        Expected(
            epochs=expected.get("epochs", int, low=1, high=10_000),
            accuracy=expected.get("accuracy", (int, float), low=0.0, high=1.0),
            tolerance=expected.get("tolerance", (int, float), low=0.0, high=0.5),
            train_images=expected.get("train_images", int, None, low=1, high=10**9),
        ),
    )


def _names(reader: _Reader, key: str, default: list[str], accepted: list[str]) -> list[str]:
    """A list of distinct names, each among `accepted`."""
    value = reader.get(key, list, default)
    if any(not isinstance(v, str) or v not in accepted for v in value) or len(set(value)) != len(
        value
    ):
        raise reader.fail(key, value, f"distinct names among {', '.join(accepted) or '(none)'}")
    return value


def _dataset(reader: _Reader) -> str:
    value = reader.get("dataset", str)
    if not value.strip() or len(value) > MAX_PATH or any(ord(c) < 32 for c in value):
        raise reader.fail("dataset", value, "a data set name or a path")
    return value


def _pruner(search: _Reader, epochs: int, searched_epochs: bool) -> PrunerChoice:
    """`search.pruner`: `asha`, `none`, or {kind, min_epochs, reduction}. Successive halving
    compares trials at the same epoch of the same schedule, so not with epochs searched."""
    value = search.raw.get("pruner", "none")
    if value is False:  # YAML reads a bare `off` as false
        value = "none"
    accepted = f"one of {', '.join(PRUNERS)}, or {{kind: asha, min_epochs: N, reduction: R}}"
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise search.fail("pruner", value, accepted)
    sub = _Reader(value, search.where, f"{search.path}.pruner")
    sub.only("kind", "min_epochs", "reduction")
    defaults = PrunerChoice()
    choice = PrunerChoice(
        kind=sub.get("kind", str, defaults.kind, choices=PRUNERS),
        min_epochs=sub.get("min_epochs", int, defaults.min_epochs, low=1, high=10_000),
        reduction=sub.get("reduction", int, defaults.reduction, low=2, high=100),
    )
    if choice.kind == "asha" and searched_epochs:
        raise sub.fail(
            "kind",
            choice.kind,
            "'none' while train.epochs is searched (trials of other "
            "lengths are at other points of their schedules at the same epoch)",
        )
    if choice.kind == "asha" and not choice.rungs(epochs):
        raise sub.fail(
            "min_epochs",
            choice.min_epochs,
            f"fewer than train.epochs ({epochs}), so that trials are compared before the end",
        )
    return choice


def _budgets(budget: _Reader) -> tuple[int, ...]:
    """`budget.params`: one budget, or a list of distinct levels the search chooses among."""
    value = budget.raw.get("params")
    if not isinstance(value, list):
        level = budget.get("params", int, None, low=1, high=MAX_BUDGET)
        return () if level is None else (level,)
    if (
        not value
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        or not all(1 <= v <= MAX_BUDGET for v in value)
        or len(set(value)) != len(value)
    ):
        raise budget.fail("params", value, f"a list of distinct integers in [1, {MAX_BUDGET}]")
    return tuple(sorted(value))


def _default_objectives(budgets: tuple[int, ...], policy: str) -> list[str]:
    """Size is an objective only where sizes differ: between budget levels, or between
    unscaled configurations. One budget under `scale` leaves accuracy and latency."""
    if len(budgets) > 1:
        return ["accuracy", "budget", "latency_ms"]
    if budgets and policy == "scale":
        return ["accuracy", "latency_ms"]
    return ["accuracy", "params", "latency_ms"]


def _name(top: _Reader, where: str) -> str:
    """The space's name (default: the file's), which names studies and their weights folders."""
    if "name" in top.raw:
        return check_name(top.get("name", str), f"{where}: name")
    return check_name(Path(where).stem, f"{where}: name (from the file name; set name:)")


def parse(raw: Any, where: str = "<space>", *, stored: bool = False) -> Space:
    """Validate a loaded preset mapping into a `Space`.

    `stored`: the space a study recorded when it was created. It is read as recorded, so
    advice added since (no 'params' objective under `scale`) cannot make an existing study
    unreadable, unresumable or unreportable."""
    top = _Reader(raw, where, "")
    top.only(
        "name",
        "description",
        "protocol",
        "data",
        "model",
        "budget",
        "train",
        "search",
        "techniques",
    )

    data = top.section("data")
    data.only("dataset", "val_fraction", "resize", "flip_invariant")
    resize = data.get("resize", list, None)
    if resize is not None and (
        len(resize) != 2 or not all(type(v) is int and 1 <= v <= MAX_SIDE for v in resize)
    ):
        raise data.fail("resize", resize, f"[height, width]: two integers in [1, {MAX_SIDE}]")
    data_choice = DataChoice(
        dataset=_dataset(data),
        val_fraction=data.get("val_fraction", (int, float), 0.1, low=0.01, high=0.5),
        resize=tuple(resize) if resize else None,
        flip_invariant=data.get("flip_invariant", bool, False),
    )

    model = top.section("model")
    model.only("stem_channels", "stages", "downsample", "stage_ratio")
    ratio, ratio_range = _recipe_field(model, STAGE_RATIO, (int, float), None)
    stages, stage_fields = _stages(model, ratio is not None)
    arch = ArchSpec(
        stages=stages,
        stem_channels=model.get("stem_channels", int, 8, low=1, high=MAX_CHANNELS),
        downsample=model.get("downsample", str, "maxpool", choices=("maxpool", "stride")),
    )
    if ratio is not None:
        _check_ratio(model, arch, ratio_range.range.grid() if ratio_range else (ratio,))
        arch = with_stage_ratio(arch, ratio)

    budget = top.section("budget", required=False)
    budget.only("params", "policy")

    train = top.section("train", required=False)
    train.only(*(h.name for h in TRAIN_FIELDS))
    values, recipe = {}, [] if ratio_range is None else [ratio_range]
    recipe += stage_fields
    for hyper in TRAIN_FIELDS:
        kind = type(hyper.default) if hyper.choices or hyper.integer else (int, float)
        values[hyper.name], searched = _recipe_field(train, hyper, kind, hyper.default)
        recipe += [searched] if searched else []
    train_spec = TrainSpec(**values)

    budgets = _budgets(budget)
    policy = budget.get("policy", str, "scale", choices=POLICIES)

    search = top.section("search", required=False)
    search.only("trials", "sampler", "objectives", "baseline", "pruner")
    default = _default_objectives(budgets, policy)
    objectives = _names(search, "objectives", default, list(OBJECTIVES))
    if not objectives:
        raise search.fail("objectives", objectives, f"distinct names among {', '.join(OBJECTIVES)}")
    if "params" in objectives and budgets and policy == "scale" and not stored:
        raise search.fail(
            "objectives",
            objectives,
            "no 'params' under budget.policy scale, where counts differ only within the 2% fit "
            "window; 'budget' with budget.params a list of levels makes size an objective",
        )
    if "budget" in objectives and len(budgets) < 2:
        raise search.fail(
            "objectives", objectives, "'budget' only with budget.params a list of levels"
        )

    techniques = top.section("techniques")
    unknown = sorted(set(techniques.raw) - set(REGISTRY), key=str)
    if unknown:
        raise SpaceError(
            f"{where}: unknown technique(s) {', '.join(map(_key_text, unknown[:3]))}"
            f"{', ...' if len(unknown) > 3 else ''}; registered: {', '.join(REGISTRY)}"
        )
    choices = {
        name: _technique(techniques, name, arch) for name in REGISTRY if name in techniques.raw
    }
    always = {n for n, c in choices.items() if c.switch == "on"}
    try:
        rules.check(always)
    except ValueError as err:
        raise SpaceError(f"{where}: techniques: contradictory declarations: {err}") from None
    _check_flips(techniques, choices, data_choice)
    _check_warmup(train, choices)
    for name in (n for n, c in choices.items() if c.switch != "off"):
        for needed in rules.requirements(name):
            if needed not in choices or choices[needed].switch == "off":
                raise SpaceError(
                    f"{where}: techniques.{name} needs {needed}, which the space leaves off: "
                    f"declare {needed} (on or search), or {name} off"
                )

    baseline = _names(search, "baseline", [], [n for n, c in choices.items() if c.switch != "off"])

    name = _name(top, where)
    space = Space(
        name=name,
        description=top.get("description", str, ""),
        data=data_choice,
        arch=arch,
        train=train_spec,
        techniques=choices,
        recipe=tuple(recipe),
        stage_ratio=ratio,
        budgets=budgets,
        budget_policy=policy,
        trials=search.get("trials", int, 20, low=1, high=1_000_000),
        sampler=search.get("sampler", str, "tpe", choices=SAMPLERS),
        objectives=tuple(objectives),
        baseline=tuple(baseline),
        protocol=_protocol(top),
        pruner=_pruner(search, train_spec.epochs, any(r.name == "train.epochs" for r in recipe)),
        source={**raw, "name": name},  # a stored space keeps the name its file gave it
    )
    return space
