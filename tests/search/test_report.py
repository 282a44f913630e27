"""`search report`, the statistics under it, and `search remeasure`.

The statistics are checked against scipy on fixed numbers and Holm's correction on a case
worked by hand. The reports are made by the real command from real Optuna storage holding
trials with the attributes `search run` and `search ablate` give them; only their accuracies
are chosen here, so that the expected verdicts are known.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path
from typing import Any

import matplotlib.colors
import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib import image
from matplotlib.collections import PathCollection
from scipy import stats as scipy_stats

from search import progress, provenance, report, stats
from search.front import RULE
from search.report import trials_frame
from search.report.ablation import STYLES, ablation_table, delta_figure
from search.report.formats import _mflops, _thousands
from search.sequential import PROCEDURE, Plan, sequential_verdicts
from search.study import StudyConfig, load_config
from spaces import load

# -- statistics ---------------------------------------------------------------------

ACCURACIES = [0.912, 0.905, 0.918, 0.899]


@pytest.mark.parametrize("confidence", [0.95, 0.99, 0.983])
def test_t_interval_matches_scipy(confidence: float) -> None:
    ours = stats.t_interval(ACCURACIES, confidence)
    mean = np.mean(ACCURACIES)
    low, high = scipy_stats.t.interval(
        confidence, len(ACCURACIES) - 1, loc=mean, scale=scipy_stats.sem(ACCURACIES)
    )
    assert (ours.mean, ours.low, ours.high) == pytest.approx((mean, low, high), rel=1e-12)
    via_test = scipy_stats.ttest_1samp(ACCURACIES, 0).confidence_interval(confidence)
    assert (ours.low, ours.high) == pytest.approx((via_test.low, via_test.high), rel=1e-12)
    # The numbers by hand: mean 0.9085, sd 0.008266, t(0.975, 3) = 3.182446.
    if confidence == 0.95:
        assert ours.high - ours.mean == pytest.approx(3.182446 * 0.0082664 / 2, rel=1e-4)


def test_one_seed_gives_no_interval_and_claims_nothing() -> None:
    single = stats.t_interval([0.9])
    assert single.mean == 0.9 and math.isnan(single.low) and single.covers(0.5)
    (effect,) = stats.effects([[0.01]])
    assert math.isnan(effect.p_holm) and effect.within_noise


def test_paired_differences_use_the_shared_seeds() -> None:
    seeds, diffs = stats.paired({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.75, 2: 0.7, 3: 0.1})
    assert seeds == [1, 2] and diffs == pytest.approx([0.05, 0.0])
    p = stats.t_test_p([0.01, 0.02, 0.015])
    assert p == pytest.approx(scipy_stats.ttest_rel([0.91, 0.92, 0.915], [0.9] * 3).pvalue)


def test_holm_on_a_known_case() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    # 0.02, 0.03, 0.06, 0.06; reported in the input order.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = stats.holm([0.01, math.nan, 0.02])  # one seed: not a test, not counted
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.02)


def test_effects_take_intervals_at_holms_level_and_flag_by_the_adjusted_p() -> None:
    strong = [0.030, 0.032, 0.031]
    weak = [0.004, -0.003, 0.006]
    middle = [0.010, 0.012, 0.011]
    effects = stats.effects([weak, strong, middle])
    p = [stats.t_test_p(d) for d in (weak, strong, middle)]
    order = np.argsort(p)  # strong, middle, weak
    for rank, i in enumerate(order):
        expected = stats.t_interval([weak, strong, middle][i], 1 - 0.05 / (3 - rank))
        assert effects[i].delta == expected
    assert [e.within_noise for e in effects] == [True, False, False]
    assert effects[0].delta.covers(0.0)


def test_welch_matches_scipy() -> None:
    on, off = [0.91, 0.93, 0.92, 0.95], [0.88, 0.90, 0.86]
    ours = stats.welch(on, off)
    ci = scipy_stats.ttest_ind(on, off, equal_var=False).confidence_interval(0.95)
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high))
    assert ours.mean == pytest.approx(np.mean(on) - np.mean(off))


# -- studies in real Optuna storage ---------------------------------------------------


def make_study(
    url: str,
    name: str,
    space_name: str,
    trials: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
    attrs: dict[str, Any] | None = None,
) -> optuna.Study:
    """A study as `search` stores one: its settings, then trials asked with the given
    parameters and user attributes and told the given metrics."""
    space = load(space_name)
    config = StudyConfig(space.source, len(trials), 0, None, None, "/nonexistent/weights")
    study = optuna.create_study(study_name=name, storage=url, directions=space.directions)
    for key, value in {**vars(config), **(attrs or {})}.items():
        study.set_user_attr(key, value)
    for params, user_attrs, metrics in trials:
        add_trial(study, space, params, user_attrs, metrics)
    return study


def add_trial(
    study: optuna.Study,
    space: Any,
    params: dict[str, Any],
    user_attrs: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """A trial asked with `params` and `user_attrs` and told `metrics`."""
    study.enqueue_trial(params, user_attrs=user_attrs)
    trial = study.ask()
    space.suggest(trial, user_attrs.get("seed", 0))
    for key, value in metrics.items():
        if key not in space.objectives:
            trial.set_user_attr(key, value)
    study.tell(trial, [metrics[o] for o in space.objectives])


def metrics(accuracy: float, params: int = 1490, latency: float = 0.2, **extra: Any) -> dict:
    return {
        "accuracy": accuracy,
        "params": params,
        "latency_ms": latency,
        "flops": 40_000,
        "latency_iqr_ms": 0.01,
        "device": "cpu",
        "threads": 1,
        **extra,
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_figures(directory: Path, names: list[str]) -> None:
    for name in names:
        path = directory / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        pixels = image.imread(path)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100


DESIGN = {
    "design": "oat",
    "seeds": [0, 1, 2],
    "references": ["baseline"],
    "configs": [
        {"label": "baseline", "techniques": ["depthwise", "gap"], "also": []},
        {"label": "+blurpool", "techniques": ["blurpool", "depthwise", "gap"], "also": []},
        {"label": "+se", "techniques": ["depthwise", "gap", "se"], "also": []},
        {"label": "-gap", "techniques": ["depthwise"], "also": []},
    ],
    "combination": None,
    "excluded": {"+sam": "incompatible: an example reason"},
}
# Validation accuracy by configuration and seed: blurpool gains 2 points on every seed,
# SE moves by seed noise only, removing GAP costs 3 points.
ACCURACY = {
    "baseline": [0.900, 0.910, 0.905],
    "+blurpool": [0.920, 0.931, 0.924],
    "+se": [0.904, 0.906, 0.907],
    "-gap": [0.871, 0.879, 0.876],
}


def ablation_study(url: str, name: str = "abl", settings: dict | None = None) -> optuna.Study:
    """The design's study, its settings (study attributes) updated by `settings`."""
    space = load("mnist_budget_1_5k")
    trials = []
    for seed in range(3):
        for config in DESIGN["configs"]:
            label = config["label"]
            on = [t for t in config["techniques"] if space.techniques[t].switch == "search"]
            attrs = {"config": label, "seed": seed, "baseline": label == "baseline"}
            trials.append((space.default_params(on), attrs, metrics(ACCURACY[label][seed])))
    settings = {"design": "oat", "ablation": DESIGN, **(settings or {})}
    return make_study(url, name, "mnist_budget_1_5k", trials, settings)


def table_rows(markdown: str, first_column: str) -> list[dict[str, str]]:
    """The Markdown table whose header starts with `first_column`, as dicts."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)))
    return rows


def test_ablation_report_has_one_row_per_configuration_with_paired_effects(
    search, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    ablation_study(url)
    before = digest(db)

    out = tmp_path / "rep"
    result = search("report", "abl", "--storage", url, "-o", str(out))

    assert result.returncode == 0, result.stderr
    assert digest(db) == before  # read-only on the storage
    markdown = (out / "report.md").read_text()
    rows = {r["configuration"]: r for r in table_rows(markdown, "configuration")}
    assert list(rows) == ["baseline", "+blurpool", "+se", "-gap"]
    for label, row in rows.items():
        assert row["seeds"] == "3"
        interval = stats.t_interval(ACCURACY[label])
        assert row["accuracy % (95% CI)"] == (
            f"{interval.mean * 100:.2f} ± {(interval.high - interval.mean) * 100:.2f}"
        )
        assert row["params"] == "1,490" and row["MFLOPs"] == "0.0400"  # 40,000 FLOPs
    assert rows["baseline"]["vs"] == "" and rows["baseline"]["verdict"] == ""
    treated = ("+blurpool", "+se", "-gap")
    diffs = {k: np.subtract(ACCURACY[k], ACCURACY["baseline"]) for k in treated}
    effects = dict(zip(diffs, stats.effects(list(diffs.values())), strict=True))
    for label, effect in effects.items():
        row = rows[label]
        assert row["vs"] == "baseline"
        assert row["Δ points"] == f"{diffs[label].mean() * 100:+.2f}"
        low, high = effect.delta.low * 100, effect.delta.high * 100
        assert row["Δ CI (Holm, 3 tests)"] == f"[{low:+.2f}, {high:+.2f}]"
        assert float(row["p (Holm)"]) == pytest.approx(effect.p_holm, rel=1e-2)
    verdicts = [rows[k]["verdict"] for k in ("+blurpool", "+se", "-gap")]
    assert verdicts == ["resolved gain", "within noise", "resolved loss"]
    # the unresolved one: its mean is a sixth of its spread, past 100 seeds; resolved: none
    assert rows["+se"]["seeds needed"] == "> 100"
    assert rows["+blurpool"]["seeds needed"] == rows["-gap"]["seeds needed"] == ""
    assert "Procedure: paired t-tests, Holm's step-down across the 3 comparisons" in markdown
    assert "Not trained: +sam: incompatible" in markdown
    assert "re-measured alone" not in markdown and "measured inside each trial" in markdown
    assert "median of 50 timed calls after 10 warm-up calls" in markdown

    assert markdown.splitlines()[2].startswith("12 complete trials of 12; objectives")

    check_figures(out, ["delta.png"])
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and 'src="delta.png"' not in page
    assert "<table" in page and "+blurpool" in page
    # A cell never wraps, and a table wider than the page scrolls in its own box.
    assert "td{white-space:nowrap}" in page and ".wide{overflow-x:auto" in page
    assert page.count('<div class="wide"><table') == page.count("<table")
    assert "| code |" in markdown and provenance.code_fingerprint() in markdown  # this code's
    for field in ("commit", "torch", "optuna", "ray", "device", "Space hash", "fingerprint"):
        assert field in markdown, field
    assert "Test set: not used" in markdown
    assert "Trials ran on: cpu x 1 thread." in markdown


def test_the_table_names_what_each_configurations_trials_trained(tmp_path: Path) -> None:
    """A technique the space fixes on is in every trial but in no design switch: the row
    takes its trials' `techniques`, and the design's switches only before any trained."""
    study = ablation_study(f"sqlite:///{tmp_path / 's.db'}")
    frame = trials_frame(study, load_config(study))
    assert set(frame.loc[frame["config"] == "baseline", "techniques"]) == {"depthwise + gap"}
    frame.loc[frame["config"] == "baseline", "techniques"] = "depthwise + gap + swa"
    frame = frame[frame["config"] != "-gap"]  # not trained yet
    table, _ = ablation_table(frame, DESIGN, "latency_ms")
    named = dict(zip(table["configuration"], table["techniques"], strict=True))
    assert named == {
        "baseline": "depthwise + gap + swa",
        "+blurpool": "depthwise + gap + blurpool",
        "+se": "depthwise + gap + se",
        "-gap": "depthwise",
    }


def test_the_delta_chart_tells_gains_losses_and_noise_apart_and_shows_each_seed(
    tmp_path: Path,
) -> None:
    study = ablation_study(f"sqlite:///{tmp_path / 's.db'}")
    frame = trials_frame(study, load_config(study))
    _, compared = ablation_table(frame, DESIGN, "latency_ms")
    verdicts = {c.label: c.verdict for c in compared}
    assert verdicts == {
        "+blurpool": "resolved gain",
        "+se": "within noise",
        "-gap": "resolved loss",
    }
    ax = delta_figure(compared).axes[0]
    colours = {
        label.get_text(): bar.get_facecolor()
        for label, bar in zip(
            ax.get_yticklabels(), sorted(ax.patches, key=lambda b: b.get_y()), strict=True
        )
    }
    for label, verdict in verdicts.items():
        assert matplotlib.colors.to_hex(colours[label]) == STYLES[verdict]["color"], label
    scattered = [c for c in ax.collections if isinstance(c, PathCollection)]
    dots = np.concatenate([c.get_offsets() for c in scattered])
    assert len(dots) == 3 * 3  # each comparison's three seeds
    paired = [np.subtract(ACCURACY[k], ACCURACY["baseline"]) * 100 for k in verdicts]
    assert sorted(dots[:, 0]) == pytest.approx(sorted(np.concatenate(paired)))
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"resolved gain", "resolved loss", "within noise", "a seed's Δ"} == legend


def test_a_sequential_design_reports_its_procedure_and_the_seeds_each_got(
    search, tmp_path: Path
) -> None:
    """`--seeds auto`: the verdicts are the sequential procedure's (search/sequential.py),
    on the seeds each configuration got (here +blurpool and -gap stopped at 3, +se went on
    to the plan's 5 with the baseline)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = ablation_study(url, settings={"seeds": 3, "max_seeds": 5})
    more = {"baseline": [0.902, 0.908], "+se": [0.915, 0.918]}  # +se: 0.5 points, open
    space = load("mnist_budget_1_5k")
    for label, values in more.items():
        config = next(c for c in DESIGN["configs"] if c["label"] == label)
        on = [t for t in config["techniques"] if space.techniques[t].switch == "search"]
        for seed, accuracy in enumerate(values, start=3):
            attrs = {"config": label, "seed": seed, "baseline": label == "baseline"}
            add_trial(study, space, space.default_params(on), attrs, metrics(accuracy))
    result = search("report", "abl", "--storage", url, "-o", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "## Ablation: design oat, seeds auto (3..5)" in markdown
    assert PROCEDURE in markdown
    rows = {r["configuration"]: r for r in table_rows(markdown, "configuration")}
    assert [rows[k]["seeds"] for k in rows] == ["5", "3", "5", "3"]
    accuracy = {k: dict(enumerate(v + more.get(k, []))) for k, v in ACCURACY.items()}
    differences = [
        stats.paired(accuracy[k], accuracy["baseline"])[1] for k in ("+blurpool", "+se", "-gap")
    ]
    verdicts = sequential_verdicts(differences, Plan(3, 5))
    for label, verdict in zip(("+blurpool", "+se", "-gap"), verdicts, strict=True):
        row = rows[label]
        low, high = verdict.interval.low * 100, verdict.interval.high * 100
        assert row["Δ CI (repeated, 3 tests)"] == f"[{low:+.2f}, {high:+.2f}]"
        assert row["seeds needed"] == ("" if verdict.resolved else str(verdict.seeds_needed))
    assert rows["+se"]["verdict"] == "within noise" and 5 < int(rows["+se"]["seeds needed"]) < 100


@pytest.mark.parametrize(
    ("flops", "shown"),
    [(40_000, "0.0400"), (109_756, "0.110"), (1_059_582, "1.06"), (20_123_456, "20.12")],
)
def test_flops_read_in_millions_with_three_digits_at_least(flops: int, shown: str) -> None:
    assert _mflops(flops) == shown
    assert _thousands(2952.0) == "2,952" and _thousands(139_781) == "139,781"


def test_the_code_fingerprint_names_the_source_wherever_it_is_copied(tmp_path: Path) -> None:
    for package in provenance.SOURCES:
        shutil.copytree(provenance.ROOT / package, tmp_path / package)
    (tmp_path / "search" / "stale.pyc").write_bytes(b"compiled")  # not source
    assert provenance.code_fingerprint(tmp_path) == provenance.code_fingerprint()
    changed = tmp_path / "trainer" / "train.py"
    changed.write_text(changed.read_text() + "\n")
    assert provenance.code_fingerprint(tmp_path) != provenance.code_fingerprint()
    changed.write_text(changed.read_text()[:-1])
    assert provenance.code_fingerprint(tmp_path) == provenance.code_fingerprint()
    preset = next((tmp_path / "spaces").rglob("*.yaml"))
    preset.rename(preset.with_name("renamed.yaml"))  # a path is part of what the code is
    assert provenance.code_fingerprint(tmp_path) != provenance.code_fingerprint()


def test_report_of_a_missing_study_is_a_usage_error(search, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    ablation_study(url)
    result = search("report", "ghost", "--storage", url, "-o", str(tmp_path / "rep"))
    assert result.returncode == 2 and "no study named 'ghost'" in result.stderr
    assert not (tmp_path / "rep").exists()
    (tmp_path / "file").write_text("")
    result = search("report", "abl", "--storage", url, "-o", str(tmp_path / "file"))
    assert result.returncode == 2 and "is not a directory" in result.stderr
    assert "Traceback" not in result.stderr


TRIALS = 32


def search_study(url: str, name: str = "srch") -> optuna.Study:
    """A quickstart search of 32 trials: mixup helps accuracy, a larger level helps less,
    SE costs latency."""
    space = load("quickstart")
    rng = np.random.default_rng(3)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(directions=["maximize"], sampler=sampler)
    trials = []
    for _ in range(TRIALS):
        params = space.suggest(study.ask()).techniques
        level = int(rng.choice([400, 1000, 2000]))
        chosen = space.default_params(params)
        chosen["budget.params"] = level
        accuracy = 0.8 + 0.04 * ("mixup" in params) + level / 50_000 + rng.normal(0, 0.005)
        latency = 0.1 + 0.05 * ("se" in params) + rng.uniform(0, 0.01)
        trials.append(
            (
                chosen,
                {"seed": 0},
                metrics(accuracy, int(level * 0.99), latency, budget=level),
            )
        )
    return make_study(url, name, "quickstart", trials)


def test_search_report_draws_the_front_and_ranks_the_switches(search, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    study = search_study(url)
    before = digest(db)

    out = tmp_path / "rep"
    result = search("report", "srch", "--storage", url, "-o", str(out))

    assert result.returncode == 0, result.stderr
    assert digest(db) == before
    markdown = (out / "report.md").read_text()
    check_figures(out, ["pareto_latency.png", "pareto_params.png", "hypervolume.png"])
    front = table_rows(markdown, "trials")  # one seed: a configuration is one trial
    strict = {t.number for t in study.best_trials}
    assert front and {int(r["trials"]) for r in front} <= strict
    assert RULE in markdown and "## Pareto front (noise-aware)" in markdown
    assert {r["budget"] for r in front} <= {"400", "1,000", "2,000"}  # counts read as counts
    assert {r["params"] for r in front} <= {"396", "990", "1,980"}
    for row in front:  # named as the export names them
        trial = study.trials[int(row["trials"])]
        on = [n for n in trial.params if n.endswith(".enabled")]
        assert row["techniques"] == progress.named(
            n.removesuffix(".enabled") for n in on if trial.params[n]
        )
        assert row["latency_ms"] == f"{trial.values[2]:.4f} ± 0.0100"  # its IQR: the band
        assert row["accuracy %"] == f"{trial.values[0] * 100:.2f} (1 seed)"
    shown = report.build(study, load_config(study), strict_front=True).markdown()
    assert {int(r["trials"]) for r in table_rows(shown, "trials")} == strict
    importance = pd.DataFrame(table_rows(markdown, "parameter")).set_index("parameter")
    importance = importance.astype(float)
    assert importance["accuracy"].idxmax() == "mixup.enabled"
    assert importance["budget"].idxmax() == "budget.params"
    assert importance["latency_ms"].idxmax() == "se.enabled"
    assert importance.sum().to_numpy() == pytest.approx([1, 1, 1], abs=0.01)  # normalised
    marginal = {
        r["switch"]: r for r in table_rows(markdown[markdown.index("Marginal effect") :], "switch")
    }
    assert marginal["mixup"]["covers 0"] == "no"
    assert float(marginal["mixup"]["Δ points (on - off)"]) > 2
    assert "reference point" in markdown
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


def test_the_count_tells_interrupted_trials_trained_again_from_open_failures(
    tmp_path: Path,
) -> None:
    study = search_study(f"sqlite:///{tmp_path / 's.db'}")
    first = study.trials[0]

    def add(state: optuna.trial.TrialState, **attrs: Any) -> int:
        values = first.values if state == optuna.trial.TrialState.COMPLETE else None
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=first.params,
                distributions=first.distributions,
                values=values,
                user_attrs={"seed": 5, **attrs, **({} if values is None else first.user_attrs)},
            )
        )
        return study.trials[-1].number

    interrupted = add(optuna.trial.TrialState.FAIL, failure="interrupted")
    add(optuna.trial.TrialState.COMPLETE, rerun_of=interrupted)
    add(optuna.trial.TrialState.FAIL, failure="interrupted")
    add(optuna.trial.TrialState.FAIL, failure="error")
    markdown = report.build(study, load_config(study)).markdown()
    assert markdown.splitlines()[2].startswith(
        f"{TRIALS + 1} complete trials of {TRIALS + 4} (the others: error 1; interrupted 1; "
        "interrupted, trained again 1); objectives accuracy, budget, latency_ms"
    )


# -- budget levels: size as a real dimension ----------------------------------------------


def test_one_scaled_budget_is_no_objective_and_levels_are_searched() -> None:
    assert load("mnist_budget_1_5k").objectives == ("accuracy", "latency_ms")
    assert load("cifar_budget_140k").objectives == ("accuracy", "latency_ms")
    quick = load("quickstart")
    assert quick.budgets == (400, 1000, 2000)
    assert quick.objectives == ("accuracy", "budget", "latency_ms")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    levels = set()
    for _ in range(12):
        trial = study.ask()
        spec = quick.suggest(trial)
        assert spec.budget == trial.params["budget.params"]
        assert quick.columns(trial.params)["budget.params"] == spec.budget
        levels.add(spec.budget)
    assert levels == {400, 1000, 2000}
    assert quick.replay(quick.baseline_params()).budget == 2000  # the reference: top level


def test_no_point_sits_on_the_front_for_a_count_under_two_percent_smaller() -> None:
    """The issue's example: an 83% trial with 1,969 parameters against a 90% one with 1,981
    at the same latency. Whether sizes are levels or one budget, only the 90% is optimal."""
    for name, values in (
        ("mnist_budget_1_5k", {}),
        ("quickstart", {"budget": 2000}),
    ):
        space = load(name)
        study = optuna.create_study(directions=space.directions)
        for accuracy, params in ((0.83, 1969), (0.90, 1981)):
            measured = {"accuracy": accuracy, "params": params, "latency_ms": 0.3, **values}
            study.add_trial(
                optuna.trial.create_trial(values=[measured[o] for o in space.objectives])
            )
        assert [t.values[0] for t in study.best_trials] == [0.90], name


def test_counted_params_as_an_objective_under_scale_is_refused() -> None:
    from spaces import SpaceError, parse

    raw = dict(load("mnist_budget_1_5k").source)
    with pytest.raises(SpaceError, match=r"no 'params' under budget\.policy scale"):
        parse({**raw, "search": {**raw["search"], "objectives": ["accuracy", "params"]}})
    with pytest.raises(SpaceError, match=r"'budget' only with budget\.params a list"):
        parse({**raw, "search": {**raw["search"], "objectives": ["accuracy", "budget"]}})
    with pytest.raises(SpaceError, match=r"a list of distinct integers in \[1, 10000000000\]"):
        parse({**raw, "budget": {"params": [1000, 1000]}})
    rejecting = parse({**raw, "budget": {"params": 1500, "policy": "reject"}, "search": {}})
    assert rejecting.objectives == ("accuracy", "params", "latency_ms")


# -- remeasure -------------------------------------------------------------------------------


def test_remeasure_times_the_front_alone_and_says_how(search, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = load("quickstart")
    gpu = metrics(0.95, 1990, 0.1, budget=2000, device="cuda")
    cpu = metrics(0.90, 990, 0.1, budget=1000, threads=2)
    one = metrics(0.80, 395, 0.1, budget=400, threads=1)
    params = space.baseline_params()
    study = make_study(
        url,
        "rm",
        "quickstart",
        [
            (params, {"seed": 0}, gpu),
            ({**params, "budget.params": 1000}, {"seed": 0}, cpu),
            ({**params, "budget.params": 400}, {"seed": 0}, one),
        ],
    )
    assert len(study.best_trials) == 3

    result = search("remeasure", "rm", "--storage", url)

    assert result.returncode == 0, result.stderr
    records = optuna.load_study(study_name="rm", storage=url).user_attrs["latency_ms_alone"]
    import torch

    if torch.cuda.is_available():
        assert records["0"]["device"].startswith("cuda: ")
    else:
        assert "0" not in records and "not re-timed" in result.stdout
    record = records["1"]
    assert record["median_ms"] > 0 and record["runs"] == 200 and record["warmup"] == 10
    assert record["threads"] == 2 and record["device"].startswith("cpu: ")
    assert "trial 1:" in result.stdout and ", 2 threads, 200 runs" in result.stdout
    assert records["2"]["threads"] == 1 and ", 1 thread, 200 runs" in result.stdout


def test_a_small_search_report_says_what_it_cannot_estimate(search, tmp_path: Path) -> None:
    """Four trials at one level: the budget objective has nothing to explain."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    params = load("quickstart").baseline_params()
    trials = [
        (
            {**params, "mixup.enabled": i % 2 == 0, "se.enabled": i < 2},
            {"seed": 0},
            metrics(0.9 + 0.01 * (i % 2), 1980, 0.1 + 0.01 * (i < 2), budget=2000),
        )
        for i in range(4)
    ]
    make_study(url, "few", "quickstart", trials)
    result = search("report", "few", "--storage", url, "-o", str(tmp_path / "rep"))
    assert result.returncode == 0, result.stderr
    importance = table_rows((tmp_path / "rep" / "report.md").read_text(), "parameter")
    assert {r["budget"] for r in importance} == {"constant"}
