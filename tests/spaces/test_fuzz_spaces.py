"""Property: any mutation of a shipped preset is either a usable space or one `SpaceError`
(or, for its data set, one `DataError`) in a single line under 300 characters; never
another exception, never a hang.

Each example draws one mutation class, one per kind of bad input found so far (see
tests/regressions/ for the fixed cases), and applies it to a random preset. The spaces
that pass are then used: a trial is suggested by a real Optuna sampler and replayed, and
per class the budget is fitted or the data set opened, as `search run` does before it
starts anything.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spaces import SpaceError, check_budget, check_build, loads, preset_names, resolve
from trainer.data import DataError, load_dataset
from trainer.spec import TrainSpec
from trainer.techniques import REGISTRY, build

EXAMPLES = 1200
PRESETS = {name: yaml.safe_load(resolve(name).read_text()) for name in preset_names()}


class Raw(str):
    """YAML text put into the document as it is (a tag, an alias, unbalanced brackets)."""


def emit(value: Any) -> str:
    """`value` as flow-style YAML; `Raw` pieces verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{emit(k)}: {emit(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(emit(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # JSON string escapes are YAML double-quoted escapes


def document(doc: dict) -> bytes:
    """One top-level key per line, so a line-level mutation hits one key."""
    return "".join(f"{emit(k)}: {emit(v)}\n" for k, v in doc.items()).encode(
        "utf-8", "surrogatepass"
    )


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path below `node` (dict keys and list indices)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, dict | list) and value:
            found += paths(value, (*prefix, key))
    return found


def set_at(doc: dict, path: tuple, value: Any) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def bomb(levels: int, width: int) -> Raw:
    parts = [f"&a0 [{', '.join(['x'] * width)}]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return Raw("[" + ", ".join(parts) + "]")


NAMES = ["accuracy", "gap", "digits", "search", "on", "x"]
ODD_STRINGS = ["", " ", "/", "~", "~/", ".", "..", "../..", "/dev/null", "/proc", "a/b"]
ODD_STRINGS += ["x" * 5000, "\ud800", "~nouser/x", "DIGITS ", "mnist", "digits", "a\x00b"]
NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1, 0, 1, 10**30, 1e-300]),
    st.sampled_from([Raw("1e-3"), Raw("1E+3"), Raw(".5e-2"), Raw("-2e1"), Raw("0x10")]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
)
SCALARS = st.one_of(
    NUMBERS, st.booleans(), st.none(), st.sampled_from(ODD_STRINGS), st.text(max_size=30)
)
RECIPE_FIELDS = [f.name for f in fields(TrainSpec)]
# Declarations each recipe field accepts, so that searched ones get suggested and replayed.
USABLE: dict[str, list[Any]] = {
    "epochs": [{"low": 1, "high": 3}, [2, 1]],
    "batch_size": [[32, 64], {"low": 16, "high": 128, "log": True, "default": 100}],
    "lr": [{"low": 0.01, "high": 0.3, "log": True}, [0.1, 0.05]],
    "momentum": [{"low": 0.8, "high": 0.95, "default": 0.9}],
    "weight_decay": [{"low": 1e-5, "high": 1e-3, "log": True}, [0, 5e-4]],
    "nesterov": [[False, True]],
    "schedule": [["constant", "cosine"]],
    "warmup_fraction": [{"low": 0.0, "high": 0.2}, [0.0, 0.1], 0.05],
    "no_wd_bn_bias": [[False, True], True],
    "crop_padding": [[0, 2], {"low": 0, "high": 4}],
    "flip": [[True, False]],
    "stage_ratio": [{"low": 1.0, "high": 2.0}, [0.5, 1.5], 1.25],
}
# Declarations each stage field accepts: a scalar fixes it, a list or range searches it.
STAGE_USABLE: dict[str, list[Any]] = {
    "blocks": [2, [1, 2], {"low": 1, "high": 3}, {"low": 1, "high": 2, "default": 2}],
    "kernel": [5, [3, 5, 7], [7, 3]],
}
SWITCH = st.sampled_from(["search", "on", "off", Raw("on"), Raw("off"), Raw("yes"), None])
# The block techniques' declarations, usable or not.
BLOCK = st.one_of(
    SWITCH,
    st.sampled_from(
        [
            {"enabled": "search", "expansion": {"low": 2, "high": 4}},
            {"enabled": "on", "expansion": 3, "activation": "relu"},
            {"expansion": [2, 6], "activation": ["relu6", "relu"]},
        ]
    ),
    st.fixed_dictionaries(
        {"enabled": SWITCH},
        optional={
            "expansion": st.one_of(
                st.integers(0, 8),
                st.lists(st.integers(0, 8), max_size=3),
                st.fixed_dictionaries({"low": st.integers(0, 8), "high": st.integers(0, 8)}),
                SCALARS,
            ),
            "activation": st.one_of(
                st.sampled_from(["relu6", "relu", ["relu", "relu6"], "gelu", []]), SCALARS
            ),
        },
    ),
    SCALARS,
)
TAGS = ["!!int", "!!float", "!!bool", "!!timestamp", "!!binary", "!!null", "!!str", "!!set"]
TAGS += ["!!python/object/apply:os.system", "!!python/name:os.system", "!custom"]


def mutate(kind: str, doc: dict, draw: Any) -> bytes:
    """The bytes of `doc` with one mutation of class `kind`."""
    path = draw(st.sampled_from(paths(doc)))
    if kind == "encoding":
        how = draw(st.sampled_from(["utf-16", "byte", "control", "bom"]))
        data = document(doc)
        if how == "utf-16":
            return data.decode().encode("utf-16")
        if how == "bom":
            return b"\xef\xbb\xbf" + data
        at = draw(st.integers(0, len(data)))
        junk = {"byte": draw(st.sampled_from([b"\xff", b"\x80", b"\xc3\x28", b"\xed\xa0\x80"]))}
        junk["control"] = draw(st.sampled_from([b"\x00", b"\x07", b"\x1b", b"\x7f"]))
        return data[:at] + junk[how] + data[at:]
    if kind == "unhashable":
        value = draw(st.sampled_from([[[n]] for n in NAMES] + [{"a": [1]}, [{}], [[]]]))
        return document(set_at(doc, path, value))
    if kind == "tag":
        text = draw(st.text("abcxyz019.-", max_size=8))
        raw = [Raw(f"{draw(st.sampled_from(TAGS))} {json.dumps(text)}")]
        raw.append(Raw("9" * draw(st.integers(4000, 6000))))
        return document(set_at(doc, path, draw(st.sampled_from(raw))))
    if kind == "nesting":
        n = draw(st.integers(1, 300))  # tests/regressions/deep_nesting.yaml has 1,000
        closed = draw(st.booleans())
        opener = draw(st.sampled_from(["[", "{a: "]))
        closer = "]" if opener == "[" else "}"
        return document(set_at(doc, path, Raw(opener * n + (closer * n if closed else ""))))
    if kind == "resize":
        side = st.one_of(st.integers(-10, 10**12), st.booleans(), st.floats(), st.text(max_size=5))
        value = draw(st.one_of(st.lists(side, max_size=4), SCALARS))
        return document(set_at(doc, ("data", "resize"), value))
    if kind == "dataset":
        value = draw(st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=40), SCALARS))
        return document(set_at(doc, ("data", "dataset"), value))
    if kind == "alias":
        raw = [bomb(draw(st.integers(1, 12)), draw(st.integers(1, 12)))]
        raw += [Raw("&r [1, *r]"), Raw("&m {k: *m}"), Raw("*undefined"), Raw("{<<: {a: 1}}")]
        return document(set_at(doc, path, draw(st.sampled_from(raw))))
    if kind == "size":
        pad = draw(st.sampled_from([100_000, 1_000_001, 3_000_000]))
        return document(doc) + b"# " + b"x" * pad + b"\n"
    if kind == "number":
        return document(set_at(doc, path, draw(NUMBERS)))
    if kind == "budget":
        value = draw(st.one_of(NUMBERS, st.lists(st.integers(-5, 10**12), max_size=5), SCALARS))
        return document(set_at(doc, ("budget", "params"), value))
    if kind == "name":
        value = draw(st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=120), SCALARS))
        return document({**doc, "name": value})
    if kind == "duplicate":
        lines = document(doc).splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        return b"".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    if kind == "log":
        technique = draw(st.sampled_from(["se", "mixup", "sam", "swa", "label_smoothing"]))
        hyper = next(h for h in REGISTRY[technique].hypers if h.choices is None)
        low = draw(st.one_of(st.sampled_from([0, 0.0, -1, hyper.low, 1e-300]), NUMBERS))
        rng = {"low": low, "high": draw(st.sampled_from([hyper.high, low])), "log": True}
        return document(set_at(doc, ("techniques", technique), {hyper.name: rng}))
    if kind == "recipe":  # a searched recipe field: a range, choices or a scalar
        field = draw(st.sampled_from([*RECIPE_FIELDS, "stage_ratio"]))
        bound = st.one_of(st.integers(1, 16), st.floats(0.01, 1), st.floats(1, 4), NUMBERS)
        value = draw(
            st.one_of(
                st.sampled_from(USABLE[field]),
                st.fixed_dictionaries(
                    {"low": bound, "high": bound},
                    optional={"log": st.booleans(), "default": bound},
                ),
                st.lists(
                    st.one_of(bound, st.sampled_from(["cosine", "constant", True, False])),
                    max_size=4,
                ),
                SCALARS,
            )
        )
        if field in RECIPE_FIELDS:
            return document(set_at(doc, ("train", field), value))
        doc = set_at(doc, ("model", "stage_ratio"), value)
        if draw(st.booleans()):  # the ratio sets the later stages' channels: declare none
            first, *later = doc["model"]["stages"]
            later = [{k: v for k, v in s.items() if k != "channels"} for s in later]
            doc = set_at(doc, ("model", "stages"), [first, *later])
        return document(doc)
    if kind == "flip":  # flip TTA needs mirrors to keep labels: data.flip_invariant says so
        invariant = draw(st.one_of(st.booleans(), SCALARS))
        doc = set_at(doc, ("data", "flip_invariant"), invariant)
        value = draw(st.one_of(st.sampled_from(["on", "search", "off", Raw("on")]), SCALARS))
        return document(set_at(doc, ("techniques", "tta_flip"), value))
    if kind == "averager":  # ema and swa: one averager, ema's decay among its choices
        for name in ("ema", "swa"):
            switch = draw(st.sampled_from(["on", "search", "off", None]))
            if name == "ema" and draw(st.booleans()):
                decay = draw(st.one_of(st.sampled_from([0.99, 0.9999, [0.999, 0.99]]), NUMBERS))
                switch = {"enabled": switch or "search", "decay": decay}
            if switch is not None:
                doc = set_at(doc, ("techniques", name), switch)
        return document(doc)
    if kind == "stage_field":  # a stage's blocks or kernel: fixed, choices or a range
        stages = doc["model"]["stages"]
        i = draw(st.integers(0, len(stages) - 1))
        field = draw(st.sampled_from(sorted(STAGE_USABLE)))
        bound = st.one_of(st.integers(-1, 17), st.sampled_from([3, 5, 7]), NUMBERS)
        value = draw(
            st.one_of(
                st.sampled_from(STAGE_USABLE[field]),
                st.fixed_dictionaries(
                    {"low": bound, "high": bound}, optional={"default": bound, "log": st.booleans()}
                ),
                st.lists(bound, max_size=4),
                SCALARS,
            )
        )
        return document(set_at(doc, ("model", "stages", i, field), value))
    if kind == "block":  # a block technique, and the depthwise switch a bottleneck needs
        name = draw(st.sampled_from(["inverted_bottleneck", "residual", "late_downsample"]))
        doc = set_at(doc, ("techniques", name), draw(BLOCK))
        depthwise = draw(st.sampled_from(["as declared", "search", "on", "off", "absent"]))
        if depthwise == "absent":
            doc = copy.deepcopy(doc)
            doc["techniques"].pop("depthwise", None)
        elif depthwise != "as declared":
            doc = set_at(doc, ("techniques", "depthwise"), depthwise)
        return document(doc)
    if kind == "stages":
        stage = draw(
            st.one_of(st.just({"channels": 8}), SCALARS, st.dictionaries(SCALARS, SCALARS))
        )
        count = draw(st.sampled_from([0, 1, 33, 5_000]))
        return document(set_at(doc, ("model", "stages"), [stage] * count))
    if kind == "structure":
        how = draw(st.sampled_from(["delete", "unknown", "scalar", "technique"]))
        if how == "delete":
            doc = copy.deepcopy(doc)
            node = doc
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            return document(doc)
        if how == "unknown":
            key = draw(st.one_of(st.sampled_from([Raw("on"), Raw("yes"), Raw("off")]), SCALARS))
            parent = path[:-1] if isinstance(path[-1], str) else ()  # a mapping, not a list
            return document(set_at(doc, (*parent, key), 1))
        if how == "technique":
            name = draw(st.sampled_from(list(REGISTRY)))
            value = draw(st.one_of(SCALARS, st.just({}), st.just([]), st.just({"enabled": "x"})))
            return document(set_at(doc, ("techniques", name), value))
        return document(set_at(doc, path, draw(SCALARS)))
    assert kind == "bytes"
    data = bytearray(document(doc))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
    return bytes(data)


CLASSES = ["encoding", "unhashable", "tag", "nesting", "resize", "dataset", "alias", "size"]
CLASSES += ["number", "budget", "name", "duplicate", "log", "stages", "structure", "bytes"]
CLASSES += ["recipe", "flip", "averager", "stage_field", "block"]
DIGITS_SHAPE = ((1, 8, 8), 10)
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}


def use(space: Any, kind: str, data_dir: Path) -> None:
    """What `search run` does with a valid space before it starts: a real sampler proposes
    a configuration that replays to the same spec; the budget is fitted; the data opened."""
    study = optuna.create_study(directions=space.directions)
    trial = study.ask()
    spec = space.suggest(trial)
    assert space.replay(trial.params) == spec
    assert space.replay(space.baseline_params()).arch == space.arch
    if kind in ("budget", "recipe", "stage_field", "block"):
        check_budget(space, *DIGITS_SHAPE)
    if kind == "block":  # every block it may build builds what it names, on its images
        check_build(space, SHAPES.get(space.data.dataset, DIGITS_SHAPE[0]), 10)
    if kind == "dataset":
        load_dataset(space.data.dataset, data_dir)
    if "tta_flip" in spec.techniques:
        assert space.data.flip_invariant
    if kind == "averager":  # a trial drawing both is refused by their rule, nothing else
        try:
            build(spec.techniques)
        except ValueError as err:
            assert {"ema", "swa"} <= set(spec.techniques), err
            assert "ema and swa may not both be on" in str(err)


def outcome(data: bytes, kind: str, data_dir: Path) -> str:
    try:
        space = loads(data, "fuzz.yaml")
        use(space, kind, data_dir)
    except (SpaceError, DataError) as err:
        message = str(err)
        assert len(message) < 300 and "\n" not in message, message
        return "rejected"
    return "accepted"


def test_mutated_spaces_are_valid_or_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCH_CACHE_DIR", "")  # write nothing, even for valid data sets
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts: Counter[tuple[str, str]] = Counter()
    seconds: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def property_(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(CLASSES))
        preset = data.draw(st.sampled_from(sorted(PRESETS)))
        start = time.perf_counter()
        result = outcome(mutate(kind, PRESETS[preset], data.draw), kind, tmp_path)
        seconds[kind] += time.perf_counter() - start
        counts[kind, result] += 1

    start = time.perf_counter()
    property_()
    total = sum(counts.values())
    print(f"\nfuzz: {total} spaces in {time.perf_counter() - start:.1f}s; by class:")
    for k in CLASSES:
        print(
            f"  {k:10} accepted {counts[k, 'accepted']:4} rejected {counts[k, 'rejected']:4}"
            f"  {seconds[k]:5.1f}s"
        )
    by_class = {k: (counts[k, "accepted"], counts[k, "rejected"]) for k in CLASSES}
    assert total >= 1000
    assert all(rejected for _, rejected in by_class.values())  # every class was exercised
