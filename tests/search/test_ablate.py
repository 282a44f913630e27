"""Designed ablations: the designs on the shipped presets, the rules and the budget that
shape them, bad input on `search ablate`, and one designed study through real Ray and Optuna."""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from test_report import check_figures, table_rows

from search import ablate, export
from search import study as studies
from search.errors import UsageError
from search.storage import open_storage
from search.study import StudyConfig, load_config
from spaces import Space, load, parse, preset_names
from trainer import techniques as registry
from trainer.techniques import rules

PRESETS = preset_names()


@pytest.mark.parametrize("preset", PRESETS)
def test_oat_toggles_exactly_one_technique_of_the_baseline(preset: str) -> None:
    space = load(preset)
    design = ablate.make(space, "oat")
    names = ablate.searchable(space)
    base = frozenset(space.baseline)
    assert design.configs[0] == ablate.Config("baseline", base)
    assert len(design.configs) == 1 + len(names)
    labels = [c.label for c in design.configs[1:]]
    assert labels == [f"-{n}" if n in base else f"+{n}" for n in names]
    for config in design.configs[1:]:
        assert len(config.techniques ^ base) == 1  # differs in exactly one technique
        assert config.techniques ^ base == {config.label[1:]}
    assert design.excluded == {} and design.combination is None


@pytest.mark.parametrize("preset", PRESETS)
def test_loo_leaves_each_technique_out_of_a_combination_the_rules_allow(preset: str) -> None:
    space = load(preset)
    design = ablate.make(space, "loo")
    combination = design.combination
    full = frozenset(combination.techniques)
    # No exclusive rule or shared slot forbids any shipped technique pair: all combine.
    assert full == set(ablate.searchable(space)) and combination.dropped == {}
    on = full | {n for n, c in space.techniques.items() if c.switch == "on"}  # with always-on
    assert {r.techniques for r in combination.rules} == {
        r.techniques for r in rules.RULES if set(r.techniques) <= on
    }
    assert design.configs[0] == ablate.Config("full", full)
    assert [c.label for c in design.configs[1:]] == [f"full-{n}" for n in combination.techniques]
    for config in design.configs:
        registry.build(space.replay(space.default_params(config.techniques)).techniques)
        if config.label != "full":
            assert full - config.techniques == {config.label.removeprefix("full-")}


@pytest.mark.parametrize("preset", PRESETS)
def test_both_is_the_union_and_paper_is_the_papers_table(preset: str) -> None:
    space = load(preset)
    one, out = ablate.make(space, "oat"), ablate.make(space, "loo")
    union = ablate.make(space, "both")
    first: dict[frozenset[str], str] = {}  # a configuration both designs give: trained once
    for c in one.configs + out.configs:
        first.setdefault(c.techniques, c.label)
    assert [c.label for c in union.configs] == list(first.values())
    labels = [label for c in union.configs for label in (c.label, *c.also)]
    assert sorted(labels) == sorted(c.label for c in one.configs + out.configs)

    paper = ablate.make(space, "paper")
    base = frozenset(space.baseline)
    by_label = {label: c.techniques for c in paper.configs for label in (c.label, *c.also)}
    expected = base | {n for n in ablate.PAPER if n in ablate.searchable(space)}
    assert by_label["paper"] == expected
    if "depthwise" in base and "depthwise" in ablate.searchable(space):
        assert by_label["-depthwise"] == base - {"depthwise"}
    else:  # depthwise declared on (the wide presets: bottlenecks need it), or not at all
        assert "-depthwise" not in by_label
    assert {label for label in by_label if label.startswith("+")} == {
        f"+{n}" for n in ablate.searchable(space) if n not in base
    }
    assert "-gap" not in by_label  # the paper compares depthwise only


def test_a_configuration_with_the_same_techniques_is_trained_once() -> None:
    raw = copy.deepcopy(load("quickstart").source)
    raw["techniques"] = {"blurpool": "search"}
    raw["search"]["baseline"] = []
    design = ablate.make(parse(raw), "both")
    # baseline == full-blurpool and +blurpool == full: two configurations, four labels.
    assert [(c.label, c.also) for c in design.configs] == [
        ("baseline", ("full-blurpool",)),
        ("+blurpool", ("full",)),
    ]


@pytest.fixture
def sam_excludes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exclusive rule between SAM and Mixup, and one between SE and depthwise."""
    extra = (
        rules.Rule(("sam", "mixup"), "exclusive", "never both", "a test rule"),
        rules.Rule(("se", "depthwise"), "exclusive", "never both", "a test rule"),
    )
    kept = tuple(r for r in rules.RULES if set(r.techniques) != {"sam", "mixup"})
    monkeypatch.setattr(rules, "RULES", kept + extra)
    monkeypatch.setattr(rules, "check", functools.partial(rules.check, rules=kept + extra))


def test_exclusive_rules_decide_the_combination_and_exclude_configurations(
    sam_excludes: None,
) -> None:
    space = load("mnist_budget_1_5k")
    loo = ablate.make(space, "loo")
    combination = loo.combination
    # Registry order: depthwise before se, mixup before sam; the later one is left out.
    assert "se" in combination.dropped and "sam" in combination.dropped
    assert "may not both be on" in combination.dropped["sam"]
    assert {"depthwise", "mixup"} <= set(combination.techniques)
    assert "full-sam" not in [c.label for c in loo.configs]
    oat = ablate.make(space, "oat")
    assert "+se" in oat.excluded and "+se" not in [c.label for c in oat.configs]
    assert "+sam" in [c.label for c in oat.configs]  # SAM alone on the baseline is fine
    assert "sam" not in ablate.make(space, "paper").combination.techniques


def test_a_configuration_without_a_required_technique_is_excluded_with_the_reason() -> None:
    raw = copy.deepcopy(load("mnist_wide_1_5k").source)
    raw["techniques"]["depthwise"] = "search"
    raw["search"]["baseline"] = ["depthwise", "gap"]
    space = parse(raw)
    loo = ablate.make(space, "loo")
    assert {"depthwise", "inverted_bottleneck"} <= set(loo.combination.techniques)
    assert "inverted_bottleneck needs depthwise on" in loo.excluded["full-depthwise"]
    assert "full-inverted_bottleneck" in [c.label for c in loo.configs]
    oat = ablate.make(space, "oat")  # from the baseline, -depthwise leaves no bottleneck
    assert oat.excluded == {} and "-depthwise" in [c.label for c in oat.configs]


def quickstart_at(params: int, policy: str) -> Space:
    raw = copy.deepcopy(load("quickstart").source)
    raw["budget"] = {"params": params, "policy": policy}
    del raw["search"]["objectives"]  # the preset's `budget` objective needs budget levels
    return parse(raw)


def test_configurations_over_a_reject_budget_are_excluded_before_anything_runs() -> None:
    space = quickstart_at(1000, "reject")  # baseline 674, -gap 1154, +se 864
    design = ablate.within_budget(ablate.make(space, "oat"), space, (1, 8, 8), 10)
    assert set(design.excluded) == {"-depthwise", "-gap"}
    assert design.excluded["-gap"] == (
        "1,154 parameters, over the budget of 1,000 under policy reject; raise budget.params "
        "to at least 1,154 or use budget.policy: scale to train it"
    )
    assert "+se" in [c.label for c in design.configs]
    space = quickstart_at(600, "reject")
    with pytest.raises(UsageError) as err:
        ablate.within_budget(ablate.make(space, "oat"), space, (1, 8, 8), 10)
    assert str(err.value) == (
        "the reference configuration 'baseline' cannot be trained: 674 parameters, over the "
        "budget of 600 under policy reject; raise budget.params to at least 674 or use "
        "budget.policy: scale"
    )


def test_under_scale_a_budget_below_the_narrowest_net_says_so_and_never_suggests_scale() -> None:
    """Scaling fits any configuration down to one channel per stage; below that it cannot
    train, and the message says so and what budget would, not to use the policy in force."""
    space = quickstart_at(50, "scale")  # the baseline's narrowest net: 59 parameters
    with pytest.raises(UsageError) as err:
        ablate.within_budget(ablate.make(space, "oat"), space, (1, 8, 8), 10)
    assert str(err.value) == (
        "the reference configuration 'baseline' cannot be trained: even its narrowest net (one "
        "channel per stage) has 59 parameters, over the budget of 50 under policy scale; raise "
        "budget.params to at least 59"
    )
    # 60 fits the baseline's narrowest net; -gap's flatten head needs more than that, and
    # -depthwise has no width whose count lands within 2% below it.
    space = quickstart_at(60, "scale")
    design = ablate.within_budget(ablate.make(space, "oat"), space, (1, 8, 8), 10)
    assert design.excluded["-gap"] == (
        "even its narrowest net (one channel per stage) has 89 parameters, over the budget of "
        "60 under policy scale; raise budget.params to at least 89 to train it"
    )
    assert design.excluded["-depthwise"] == (
        "the closest fit has 53 parameters, outside [59, 60] under policy scale; choose another "
        "budget.params to train it"
    )
    assert all("policy: scale" not in why for why in design.excluded.values())
    assert "-gap" not in [c.label for c in design.configs]


def test_queue_is_seed_major_with_paired_seeds_and_labels() -> None:
    space = load("quickstart")
    design = ablate.make(space, "oat")
    queue = design.queue(space, ablate.seeds(5, 2))
    assert len(queue) == 2 * len(design.configs)
    assert [a["seed"] for _, a in queue] == [5] * 8 + [6] * 8
    assert [a["config"] for _, a in queue[:8]] == [a["config"] for _, a in queue[8:]]
    assert [a["baseline"] for _, a in queue] == [True] + [False] * 7 + [True] + [False] * 7
    assert queue[0][0] == space.baseline_params()


def test_load_config_reads_a_study_stored_before_designs() -> None:
    study = optuna.create_study()
    old = dict(space_source={}, trials=3, seed=0, data_dir=None, epochs=None, weights_dir="w")
    for key, value in old.items():
        study.set_user_attr(key, value)
    assert load_config(study) == StudyConfig(**old, design=None, seeds=1)
    study = optuna.create_study()
    study.set_user_attr("trials", 3)
    with pytest.raises(UsageError, match="not created by this tool"):
        load_config(study)


def test_a_designed_study_with_queued_trials_exports_its_queue(tmp_path: Path) -> None:
    """An interrupted (or running) ablation still holds queued trials without parameters."""
    space = load("quickstart")
    design = ablate.make(space, "paper")
    config = StudyConfig(
        space_source=space.source,
        trials=len(design.configs),
        seed=0,
        data_dir=None,
        epochs=1,
        weights_dir=str(tmp_path),
        design="paper",
        seeds=1,
    )
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = studies.create_or_load(storage, "q", space, config, queue=design.queue(space, [0]))
    rows = export.rows(study, load_config(study), only_pareto=False)
    assert [r["state"] for r in rows] == ["WAITING"] * len(design.configs)
    assert [r["config"] for r in rows] == [c.label for c in design.configs]


NO_SWITCH = """name: fixed
data: {dataset: digits}
model: {stages: [{channels: 8}]}
techniques: {blurpool: on}
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--design", "grid"], "unknown design 'grid'; accepted: oat, loo, both, paper"),
        (["--seeds", "0"], "argument --seeds: '0': expected an integer in [1, 1000]"),
        (["{fixed}"], "switches no technique"),
    ],
)
def test_bad_ablate_input_gets_one_message_and_status_2(
    args: list[str], message: str, search, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(NO_SWITCH)
    space = [a.format(fixed=fixed) for a in args if a.startswith("{")] or ["quickstart"]
    rest = [a for a in args if not a.startswith("{")]
    before = sorted(p.name for p in tmp_path.iterdir())

    result = search("ablate", *space, *rest)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no storage


def test_dry_run_prints_the_design_and_touches_nothing(search, tmp_path: Path) -> None:
    result = search(
        "ablate", "quickstart", "--design", "loo", "--seeds", "2", "--parallel", "2", "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    assert "design loo: 8 configurations x 2 seeds (0, 1) = 16 trials" in result.stdout
    assert "rule mixup x label_smoothing" in result.stdout
    assert "cost per configuration (an estimate: " in result.stdout
    threads = max(1, (os.cpu_count() or 1) // 2)  # --parallel 2: half the cores each
    assert f"on cpu, {threads} thread{'s' * (threads > 1)} per trial" in result.stdout
    full = re.search(r"^  full +([\d,]+) +(\d+(?:-\d+)+) +\S+ +\S+$", result.stdout, re.M)
    assert full is not None and 1960 <= int(full[1].replace(",", "")) <= 2000
    assert "estimated training time: " in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_oat_ablation_trains_the_design_with_paired_seeds_and_resumes_to_nothing(
    search, tmp_path: Path
) -> None:
    # The quickstart with three techniques to add to a plain net: 4 configurations x 2 seeds.
    raw = copy.deepcopy(load("quickstart").source)
    raw["techniques"] = {t: raw["techniques"][t] for t in ("blurpool", "label_smoothing", "mixup")}
    raw["search"]["baseline"] = []
    file = tmp_path / "three.yaml"
    file.write_text(yaml.safe_dump(raw))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["--study", "ab", "--storage", url, "--epochs", "1", "--parallel", "2"]
    run = search("ablate", str(file), "--design", "oat", "--seeds", "2", *args)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "[8/8]" in run.stdout

    space = parse(raw)
    design = ablate.make(space, "oat")
    assert len(design.configs) == 4
    study = optuna.load_study(study_name="ab", storage=url)
    assert len(study.trials) == 8  # nothing sampled beyond the design
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    stored = study.user_attrs["ablation"]
    assert stored["design"] == "oat" and stored["seeds"] == [0, 1]
    assert [c["label"] for c in stored["configs"]] == [c.label for c in design.configs]
    assert study.user_attrs["design"] == "oat" and study.user_attrs["seeds"] == 2
    pairs = {(t.user_attrs["config"], t.user_attrs["seed"]): t for t in study.trials}
    assert set(pairs) == {(c.label, s) for c in design.configs for s in (0, 1)}
    for config in design.configs:
        for seed in (0, 1):
            trial = pairs[(config.label, seed)]
            assert trial.params == space.default_params(config.techniques)
            assert trial.user_attrs["baseline"] == (config.label == "baseline")
    # The trial's seed reached the trainer: one configuration trains differently per seed.
    losses = {
        pairs[(c.label, s)].user_attrs["final_loss"] for c in design.configs[:1] for s in (0, 1)
    }
    assert len(losses) == 2

    resumed = search("resume", "ab", "--storage", url, "--parallel", "2")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "8/8 trials done" in resumed.stdout
    assert len(optuna.load_study(study_name="ab", storage=url).trials) == 8

    exported = search("export", "ab", "--storage", url)
    assert exported.returncode == 0, exported.stderr
    assert "config" in exported.stdout.splitlines()[0] and "+blurpool" in exported.stdout

    # The report of the real study: one row per configuration, Δ against the baseline with
    # its interval and verdict, a valid chart, provenance recorded at the run.
    report = search("report", "ab", "--storage", url, "-o", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "rep" / "report.md").read_text()
    rows = table_rows(markdown, "configuration")
    assert [r["configuration"] for r in rows] == [c.label for c in design.configs]
    for row in rows[1:]:
        assert row["vs"] == "baseline" and row["seeds"] == "2"
        assert row["Δ points"].startswith(("+", "-"))
        assert row["Δ CI (Holm, 3 tests)"].startswith("[")
        assert row["verdict"] in ("resolved gain", "resolved loss", "within noise")
    check_figures(tmp_path / "rep", ["delta.png"])
    assert study.user_attrs["provenance"]["split"] in markdown
