"""Space files: every shipped preset validates, bad declarations are refused with a message
that names the key and what is accepted, and a trial's parameters replay to the same spec."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import yaml

from search import ablate
from search.study import StudyConfig
from spaces import SpaceError, load, parse, preset_names
from spaces.space import stage_param
from trainer.budget import resolve_arch
from trainer.techniques import REGISTRY

QUICKSTART = load("quickstart").source
# The paper's ten techniques, which the study presets declare (versioned: they stay as they are).


def edited(**changes: object) -> dict:
    """The quickstart preset with dotted keys replaced (or removed when the value is None)."""
    raw = copy.deepcopy(QUICKSTART)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = raw
        for key in path:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return raw


PAPER = {"depthwise", "gap", "blurpool", "se", "cutout", "mixup", "label_smoothing", "sam"}
PAPER |= {"one_cycle", "swa"}
BLOCKS = {"inverted_bottleneck", "residual", "late_downsample"}


def test_shipped_presets_validate_and_study_presets_declare_all_ten() -> None:
    assert {"quickstart", "mnist_budget_1_5k", "cifar_budget_140k"} <= set(preset_names())
    for name in preset_names():
        space = load(name)
        assert space.description
    for name in ("mnist_budget_1_5k", "cifar_budget_140k"):
        assert set(load(name).techniques) == PAPER
    for name in ("mnist_wide_1_5k", "cifar_wide_140k"):  # the wider family beside the ten
        assert set(load(name).techniques) >= PAPER | BLOCKS
    assert load("mnist_budget_1_5k").budgets == load("mnist_wide_1_5k").budgets == (1500,)
    assert load("cifar_budget_140k").budgets == load("cifar_wide_140k").budgets == (140_000,)


DOCUMENTED = sorted((Path(__file__).resolve().parents[2] / "docs").rglob("*.yaml"))


@pytest.mark.parametrize("path", DOCUMENTED, ids=lambda p: p.name)
def test_the_space_files_results_name_still_load_with_their_design(path: Path) -> None:
    """RESULTS.md's commands train these files (`search ablate --design oat` or `loo`, or
    `search run`): a schema change must keep them valid, and their designs what the tables
    show: each searched technique on the baseline, or left out of the whole combination."""
    space = load(str(path))
    assert space.description
    searched = {n for n, c in space.techniques.items() if c.switch == "search"}
    # Every table of RESULTS.md has BlurPool in it: switched, or on in every trial.
    if not searched:  # one configuration, trained over seeds by `search run --seeds`
        assert space.techniques["blurpool"].switch == "on"
        return
    oat = [c.label for c in ablate.make(space, "oat").configs]
    assert oat[0] == "baseline" and {label[1:] for label in oat[1:]} <= searched
    loo = [c.label for c in ablate.make(space, "loo").configs]
    assert loo[0] == "full" and {label.removeprefix("full-") for label in loo[1:]} <= searched
    assert "+blurpool" in oat or space.techniques["blurpool"].switch == "on"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown key(s) 'colour' in the top level; accepted: name"),
        (
            {"techniques__dropout": "search"},
            "unknown technique(s) 'dropout'; registered: depthwise",
        ),
        ({"techniques__blurpool": {"enabled": "search", "size": 9}}, "size = 9: expected"),
        ({"techniques__blurpool": {"enabled": "maybe"}}, "one of 'search', 'on', 'off'"),
        ({"techniques__se": {"enabled": "search", "width": 3}}, "unknown key(s) 'width'"),
        ({"techniques__mixup": {"alpha": {"low": 0.5, "high": 0.1}}}, "low <= high"),
        ({"techniques__mixup": {"enabled": "off", "alpha": 0.2}}, "is 'off' but declares"),
        ({"train__epochs": 0}, "train.epochs = 0: expected a value in [1, 10000]"),
        ({"train__lr": "fast"}, "train.lr = 'fast': expected int or float"),
        ({"train__schedule": "step"}, "train.schedule = 'step': expected one of 'cosine', 'const"),
        ({"budget__policy": "maybe"}, "budget.policy = 'maybe': expected one of 'scale', 'reject'"),
        ({"data__dataset": None}, "missing key 'data.dataset'"),
        ({"model__stages": []}, "model.stages = []: expected a list of 1 to 32"),
        ({"search__objectives": ["accuracy", "speed"]}, "distinct names among accuracy"),
        ({"search__baseline": ["swa"]}, "search.baseline"),
        ({"protocol__version": 0}, "protocol.version = 0: expected a value in [1, 1000]"),
        ({"protocol__expected__accuracy": 98.5}, "protocol.expected.accuracy = 98.5"),
        ({"protocol__expected__epochs": None}, "missing key 'protocol.expected.epochs'"),
        ({"protocol__expected__seed": 1}, "unknown key(s) 'seed' in protocol.expected"),
        ({"train__warmup_fraction": 0.6}, "train.warmup_fraction = 0.6: expected a value in"),
        ({"train__no_wd_bn_bias": "yes"}, "train.no_wd_bn_bias = 'yes': expected bool"),
        ({"data__flip_invariant": "yes"}, "data.flip_invariant = 'yes': expected bool"),
        (
            {"techniques__tta_flip": "search"},
            "techniques.tta_flip = 'search': expected off unless data.flip_invariant is true",
        ),
        ({"techniques__ema": {"decay": 0.9}}, "decay = 0.9: expected one of 0.99, 0.995"),
        (
            {"techniques__ema": "on", "techniques__swa": "on"},
            "contradictory declarations: ema and swa may not both be on",
        ),
        (
            {"techniques__one_cycle": "on", "train__warmup_fraction": 0.1},
            "train.warmup_fraction = 0.1: expected no declaration while techniques.one_cycle is on",
        ),
        (
            {"model__stages": [{"channels": 8, "kernel": 4}]},
            "model.stages[0].kernel = 4: expected one of 3, 5, 7",
        ),
        (
            {"model__stages": [{"channels": 8, "kernel": [3, 9]}]},
            "model.stages[0].kernel = 9: expected one of 3, 5, 7",
        ),
        (
            {"model__stages": [{"channels": 8, "kernel": {"low": 3, "high": 7}}]},
            "expected a value or list of values, one of 3, 5, 7",
        ),
        (
            {"model__stages": [{"channels": 8, "blocks": {"low": 0, "high": 2}}]},
            "model.stages[0].blocks = 0: expected integer in [1, 16]",
        ),
        (
            {"techniques__inverted_bottleneck": "search", "techniques__depthwise": "off"},
            "techniques.inverted_bottleneck needs depthwise, which the space leaves off",
        ),
        (
            {"techniques__inverted_bottleneck": "on"},
            "contradictory declarations: inverted_bottleneck needs depthwise on",
        ),
        (
            {
                "model__stages": [{"channels": 8, "kernel": 5}, {"channels": 16, "kernel": 3}],
                "techniques__depthwise": {"enabled": "search", "kernel": 3},
            },
            "unknown key(s) 'kernel' in techniques.depthwise; accepted: enabled, first_stage",
        ),
    ],
)
def test_bad_declarations_name_the_key_and_what_is_accepted(changes: dict, message: str) -> None:
    with pytest.raises(SpaceError) as err:
        parse(edited(**changes), "my.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("my.yaml")


def test_a_users_space_may_leave_the_protocol_and_its_expectation_out() -> None:
    """Only the shipped presets must state what their baseline reaches (test_expected.py): a
    new data set has no measured number to put there."""
    versioned = parse(edited(protocol__expected=None), "my.yaml").protocol
    assert versioned is not None and versioned.version == 1 and versioned.expected is None
    assert parse(edited(protocol=None), "my.yaml").protocol is None
    stated = load("quickstart").protocol
    assert stated is not None and stated.expected is not None
    assert stated.expected.epochs == 12 and stated.expected.train_images is None


def test_malformed_yaml_names_the_line(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntechniques: [unclosed\n")
    with pytest.raises(SpaceError, match=r"malformed YAML at line \d+"):
        load(str(path))


def test_unknown_preset_lists_the_shipped_ones() -> None:
    with pytest.raises(SpaceError, match=r"unknown preset 'nope'; shipped presets: .*quickstart"):
        load("nope")


def test_suggest_asks_hyperparameters_only_for_enabled_techniques() -> None:
    space = load("mnist_budget_1_5k")
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for _ in range(20):
        trial = study.ask()
        spec = space.suggest(trial)
        for name in space.techniques:
            on = trial.params[f"{name}.enabled"]
            assert (name in spec.techniques) == on
            asked = {k for k in trial.params if k.startswith(f"{name}.") and k != f"{name}.enabled"}
            assert bool(asked) == (
                on and any(r.fixed is None for r in space.techniques[name].hypers.values())
            )
        # A fixed hyperparameter is applied without being searched.
        if "depthwise" in spec.techniques:
            assert spec.techniques["depthwise"]["kernel"] == 3
            assert "depthwise.kernel" not in trial.params
        assert space.replay(trial.params) == spec
        study.tell(trial, [0.5, 1.0])  # accuracy, latency_ms


def test_baseline_params_replay_to_the_baseline() -> None:
    space = load("mnist_budget_1_5k")
    spec = space.replay(space.baseline_params())
    assert set(spec.techniques) == {"depthwise", "gap"}
    columns = space.columns(space.baseline_params())
    assert columns["depthwise.enabled"] and not columns["sam.enabled"]
    assert columns["sam.rho"] is None
    assert columns["budget.params"] == 1500
    assert columns["train.lr"] == 0.05 and columns["model.stages"] == "4-8-12-16"
    recipe = {f"train.{f}" for f in vars(spec.train)} | {"model.stages"}
    declared = {n: REGISTRY[n] for n in space.techniques}  # every technique it declares
    assert set(columns) == {"budget.params"} | recipe | {f"{n}.enabled" for n in declared} | {
        f"{n}.{h.name}" for n, cls in declared.items() for h in cls.hypers
    }


def test_stage_blocks_and_kernels_are_searched_replayed_and_exported() -> None:
    space = load("mnist_wide_1_5k")
    names = [stage_param(i, f) for i in range(3) for f in ("blocks", "kernel")]
    assert [r.name for r in space.recipe] == names
    # Every stage declares its kernel: depthwise's own would change nothing, so it has none.
    assert set(space.techniques["depthwise"].hypers) == {"first_stage"}
    baseline = space.replay(space.baseline_params())
    assert [(s.blocks, s.kernel) for s in baseline.arch.stages] == [(1, 3)] * 3  # first choices
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    seen = set()
    for _ in range(12):
        trial = study.ask()
        spec = space.suggest(trial)
        stages = [(s.blocks, s.kernel) for s in spec.arch.stages]
        drawn = [trial.params[n] for n in names]  # blocks, kernel of stage 0, then stage 1, ...
        assert stages == list(zip(drawn[::2], drawn[1::2], strict=True))
        assert space.replay(trial.params) == spec
        columns = space.columns(trial.params)
        assert [columns[n] for n in names] == [v for stage in stages for v in stage]
        assert columns["depthwise.kernel"] is None and columns["depthwise.enabled"]
        seen.update(stages)
        study.tell(trial, [0.5, 1.0])
    assert {k for _, k in seen} == {3, 5, 7} and {b for b, _ in seen} == {1, 2}


def test_a_stage_kernel_declared_on_some_stages_leaves_depthwise_its_kernel() -> None:
    space = parse(edited(model__stages=[{"channels": 8, "kernel": [5, 7]}, {"channels": 16}]))
    assert set(space.techniques["depthwise"].hypers) == {"kernel", "first_stage"}
    assert [s.kernel for s in space.arch.stages] == [5, None]
    assert [r.name for r in space.recipe] == [stage_param(0, "kernel")]


def test_bare_on_and_off_read_as_switches() -> None:
    """YAML turns a bare `on` into true; the space still means the switch."""
    raw = yaml.safe_load(
        "techniques: {gap: on, se: off, blurpool: {enabled: on, size: 3}, mixup: }"
    )
    space = parse(edited(techniques=raw["techniques"], search__baseline=[]), "my.yaml")
    switches = {n: c.switch for n, c in space.techniques.items()}
    assert switches == {"gap": "on", "se": "off", "blurpool": "on", "mixup": "search"}


def test_sam_rho_is_drawn_from_the_range_of_its_branch_and_replays() -> None:
    space = load("mnist_budget_1_5k")
    study = optuna.create_study(
        directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=2)
    )
    seen = set()
    for _ in range(80):
        trial = study.ask()
        spec = space.suggest(trial)
        study.tell(trial, [0.5, 1.0])  # accuracy, latency_ms
        if "sam" not in spec.techniques:
            continue
        sam = spec.techniques["sam"]
        seen.add(sam["adaptive"])
        if sam["adaptive"]:
            assert 0.1 <= trial.params["sam.rho_adaptive"] <= 2.0
            assert "sam.rho" not in trial.params
        else:
            assert 0.01 <= trial.params["sam.rho"] <= 0.2
            assert "sam.rho_adaptive" not in trial.params
        assert space.replay(trial.params) == spec
        assert space.columns(trial.params)["sam.rho"] == sam["rho"]  # the effective rho
    assert seen == {False, True}
    adaptive = space.default_params(["sam"]) | {"sam.adaptive": True}
    adaptive.pop("sam.rho")
    with pytest.raises(ValueError):  # a replay must name the branch's own parameter
        space.replay(adaptive)
    assert space.replay(adaptive | {"sam.rho_adaptive": 0.5}).techniques["sam"]["rho"] == 0.5


@pytest.mark.parametrize(
    ("sam", "message"),
    [
        ({"rho": 0.05}, "sam.rho = 0.05: expected no declaration while adaptive is searched"),
        ({"adaptive": True, "rho": 0.05}, r"sam.rho = 0.05: expected number in [0.1, 2]"),
    ],
)
def test_sam_rho_declarations_follow_adaptive(sam: dict, message: str) -> None:
    with pytest.raises(SpaceError) as err:
        parse(edited(techniques__sam=sam), "my.yaml")
    assert message in str(err.value)
    fixed = parse(edited(techniques__sam={"adaptive": True, "rho": 1.0}), "my.yaml")
    assert fixed.techniques["sam"].hypers["rho"].fixed == 1.0


def test_on_ranges_mean_on_in_every_preset() -> None:
    for name in preset_names():
        space = load(name)
        if "cutout" in space.techniques:
            assert space.techniques["cutout"].hypers["p"].fixed == 1.0  # DeVries & Taylor
        if "label_smoothing" in space.techniques:
            assert space.techniques["label_smoothing"].hypers["eps"].low >= 0.05


def test_a_study_stored_before_the_objectives_advice_still_reads() -> None:
    """Presets asked for a 'params' objective under `scale` until the advice against it; the
    studies they created hold that space and must stay readable, resumable and reportable."""
    mnist = load("mnist_budget_1_5k").source
    old = {
        **mnist,
        "search": {**mnist["search"], "objectives": ["accuracy", "params", "latency_ms"]},
    }
    with pytest.raises(SpaceError, match=r"no 'params' under budget\.policy scale"):
        parse(old, "new.yaml")
    config = StudyConfig(
        space_source=old, trials=1, seed=0, data_dir=None, epochs=2, weights_dir="w"
    )
    assert config.space().objectives == ("accuracy", "params", "latency_ms")


def test_flip_tta_is_declared_where_the_space_says_mirrors_keep_labels() -> None:
    space = parse(edited(data__flip_invariant=True, techniques__tta_flip="search"), "my.yaml")
    assert space.data.flip_invariant and space.techniques["tta_flip"].switch == "search"
    assert not load("quickstart").data.flip_invariant  # digits: undeclared means no
    parse(edited(techniques__tta_flip="off"), "my.yaml")  # off needs nothing


def test_the_new_recipe_fields_are_searched_and_replayed() -> None:
    space = parse(
        edited(
            train__warmup_fraction={"low": 0.0, "high": 0.2},
            train__no_wd_bn_bias=[False, True],
            techniques__one_cycle="search",
        ),
        "my.yaml",
    )
    assert space.train.warmup_fraction == 0.1 and space.train.no_wd_bn_bias is False
    study = optuna.create_study(directions=space.directions)
    seen = set()
    for _ in range(10):
        trial = study.ask()
        spec = space.suggest(trial)
        seen.add(spec.train.no_wd_bn_bias)
        assert 0.0 <= spec.train.warmup_fraction <= 0.2
        assert space.replay(trial.params) == spec
    assert seen == {False, True}
    defaults = parse(QUICKSTART, "q.yaml").train
    assert (defaults.warmup_fraction, defaults.no_wd_bn_bias) == (0.0, False)  # off unless declared


def test_a_searched_ema_and_swa_drawn_together_are_refused_by_their_rule() -> None:
    """One averager: a space may search both, a trial drawing both is rejected untrained
    (the runner records why), and a designed combination leaves out ema."""
    space = parse(
        edited(techniques__ema="search", techniques__swa="search", search__baseline=[]),
        "my.yaml",
    )
    both = space.replay(space.default_params(["ema", "swa"]))
    assert {"ema", "swa"} <= set(both.techniques)
    with pytest.raises(ValueError, match="ema and swa may not both be on"):
        resolve_arch(both, (1, 8, 8), 10)
    full = ablate.make(space, "loo").combination
    assert full is not None and "swa" in full.techniques and "ema" in full.dropped
