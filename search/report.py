"""`search report`: a study as a document, report.md and a self-contained report.html, with
PNG figures.

An ablation study (`search ablate`) gets the paper's table: per configuration, accuracy over
its seeds, and its paired difference to the reference with Holm-corrected intervals
(`search/stats.py`). A search study (`search run`) gets its Pareto front, hypervolume,
the importance of each searched parameter, each switch's marginal effect and, when the
recipe is searched, accuracy by recipe value. Both say where the numbers came from.

Reading a study writes nothing to its storage. The test set is read only with `--test`, and
only to add a column: every selection and every difference uses the validation accuracy.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from optuna._hypervolume import compute_hypervolume  # Optuna's exact WFG algorithm
from optuna.importance import (
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
    get_param_importances,
)
from optuna.trial import TrialState

from search import export, latency, provenance, stats
from search.study import StudyConfig
from spaces.space import BUDGET_PARAM, OBJECTIVES, STAGE_RATIO, TRAIN_PREFIX
from trainer.measure import RUNS, WARMUP

# -- the document: written once as Markdown, once as HTML ------------------------------

CODE = re.compile(r"`([^`]+)`")  # Markdown's inline code, in the HTML version


@dataclass(frozen=True)
class Plot:
    name: str  # file name, e.g. "delta.png"
    png: bytes
    caption: str


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def figure(self, figure: Plot) -> None:
        self.blocks.append(("figure", figure))

    @property
    def figures(self) -> list[Plot]:
        return [b for kind, b in self.blocks if kind == "figure"]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, block in self.blocks:
            if kind == "h2":
                out += [f"## {block}", ""]
            elif kind == "p":
                out += [block, ""]
            elif kind == "table":
                out += [_markdown_table(block), ""]
            else:
                out += [f"![{block.caption}]({block.name})", "", f"*{block.caption}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, block in self.blocks:
            if kind == "h2":
                body.append(f"<h2>{html.escape(block)}</h2>")
            elif kind == "p":
                body.append("<p>" + CODE.sub(r"<code>\1</code>", html.escape(block)) + "</p>")
            elif kind == "table":
                body.append(block.to_html(index=False, escape=True, na_rep=""))
            else:
                data = base64.b64encode(block.png).decode()
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(block.caption)}"><figcaption>'
                    f"{html.escape(block.caption)}</figcaption></figure>"
                )
        style = (
            "body{font-family:sans-serif;max-width:70em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px}"
            "img{max-width:100%}"
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{style}</style></head>"
            f"<body>\n{chr(10).join(body)}\n</body></html>\n"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|")


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _pm(interval: stats.Interval, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± half-width` (the interval is symmetric), scaled to percent by default."""
    if math.isnan(interval.low):
        return f"{interval.mean * scale:.{digits}f} (1 seed)"
    half = (interval.high - interval.mean) * scale
    return f"{interval.mean * scale:.{digits}f} ± {half:.{digits}f}"


def _range(interval: stats.Interval, scale: float = 100.0) -> str:
    if math.isnan(interval.low):
        return ""
    return f"[{interval.low * scale:+.2f}, {interval.high * scale:+.2f}]"


# -- the trials as a table ----------------------------------------------------------


def trials_frame(study: optuna.Study, config: StudyConfig) -> pd.DataFrame:
    """Every trained COMPLETE trial as an export row (a duplicate, which reused another
    trial's result, is left out: it would count one training twice), with the IQR of the
    latency timed alone."""
    rows = export.rows(study, config, only_pareto=False)
    frame = pd.DataFrame(
        [r for r in rows if r["state"] == TrialState.COMPLETE.name and r["duplicate_of"] is None]
    )
    if frame.empty:
        return frame
    alone = study.user_attrs.get(latency.ATTR, {})
    frame["latency_iqr_ms_alone"] = [
        record.get("iqr_ms") if isinstance(record := alone.get(str(n)), dict) else None
        for n in frame["number"]
    ]
    return frame


def latency_note(frame: pd.DataFrame, column: str) -> str:
    """How the latency figures in `column` of `frame` were measured."""
    threads = ", ".join(sorted({str(int(t)) for t in frame["threads"].dropna()}))
    devices = ", ".join(sorted({str(d) for d in frame["device"].dropna()}))
    if column == "latency_ms_alone":
        return (
            f"{column}: batch-1 inference, median of {latency.ALONE_RUNS} timed calls after "
            f"{WARMUP} warm-up calls, re-measured alone (one model at a time, in one process) "
            f"on each trial's device ({devices}) with its thread count ({threads})."
        )
    return (
        f"{column}: batch-1 inference, median of {RUNS} timed calls after {WARMUP} warm-up "
        f"calls, measured inside each trial at its end on its device ({devices}) with its "
        f"thread count ({threads}), while other trials may have been running beside it."
    )


def latency_figure(frame: pd.DataFrame) -> str:
    """The latency column to compare `frame`'s trials by: the figures timed alone when every
    one of them has one, else those measured inside the trials."""
    return "latency_ms_alone" if frame["latency_ms_alone"].notna().all() else "latency_ms"


# -- an ablation study ------------------------------------------------------------------


def _reference_of(label: str, references: list[str]) -> str | None:
    """What a configuration is compared with: `full-x` with `full`; a reference with the
    first reference when there are several (`full` against `baseline`); the rest with the
    first reference."""
    if label.startswith("full-") and "full" in references:
        return "full"
    if label in references:
        return references[0] if label != references[0] else None
    return references[0]


def ablation_table(
    frame: pd.DataFrame, design: dict[str, Any], latency_column: str
) -> tuple[pd.DataFrame, list[tuple[str, stats.Effect]]]:
    """One row per configuration label (a configuration trained once under several labels
    appears under each), and the Holm-corrected effects against the references."""
    references = list(design["references"])
    accuracy = {
        label: dict(zip(group["seed"], group["accuracy"], strict=True))
        for label, group in frame.groupby("config")
    }
    roles = []  # (label shown, label whose trials it is, techniques)
    for c in design["configs"]:
        for label in (c["label"], *c.get("also", ())):
            roles.append((label, c["label"], c["techniques"]))
    compared = []
    for label, trained, _ in roles:
        reference = _reference_of(label, references)
        owner = next((t for lab, t, _ in roles if lab == reference), reference)
        if reference is not None and trained in accuracy and owner in accuracy:
            _, diffs = stats.paired(accuracy[trained], accuracy[owner])
            if diffs:
                compared.append((label, reference, diffs))
    effects = stats.effects([d for _, _, d in compared])
    effect_of = {label: (ref, e) for (label, ref, _), e in zip(compared, effects, strict=True)}

    delta_ci = f"Δ CI (Holm, {_count(len(effects), 'test')})"
    columns = ["configuration", "techniques", "seeds", "accuracy % (95% CI)", "vs", "Δ points"]
    columns += [delta_ci, "p (Holm)", "within noise", "params", "FLOPs"]
    columns += ["latency ms", "latency IQR ms"]
    if "test_accuracy" in frame:
        columns.append("test accuracy %")
    rows = []
    for label, trained, techniques in roles:
        group = frame[frame["config"] == trained]
        row: dict[str, Any] = dict.fromkeys(columns, "")
        row.update(
            {
                "configuration": label,
                "techniques": " + ".join(techniques) or "(none)",
                "seeds": len(group),
            }
        )
        if group.empty:
            rows.append(row)
            continue
        row["accuracy % (95% CI)"] = _pm(stats.t_interval(group["accuracy"]))
        reference, effect = effect_of.get(label, (None, None))
        if effect is not None:
            row["vs"] = reference
            row["Δ points"] = f"{effect.delta.mean * 100:+.2f}"
            row[delta_ci] = _range(effect.delta)
            row["p (Holm)"] = "" if math.isnan(effect.p_holm) else f"{effect.p_holm:.3g}"
            row["within noise"] = "yes" if effect.within_noise else "no"
        row["params"] = int(group["params"].median())
        row["FLOPs"] = int(group["flops"].median()) if group["flops"].notna().all() else ""
        row["latency ms"] = f"{group[latency_column].median():.4f}"
        iqr = group[latency_column.replace("latency_ms", "latency_iqr_ms")]
        row["latency IQR ms"] = f"{iqr.median():.4f}" if iqr.notna().all() else ""
        if "test_accuracy" in group:
            row["test accuracy %"] = _pm(stats.t_interval(group["test_accuracy"]))
        rows.append(row)
    return pd.DataFrame(rows), [
        (label, e) for (label, _, _), e in zip(compared, effects, strict=True)
    ]


def delta_chart(effects: list[tuple[str, stats.Effect]]) -> Plot:
    fig = Figure(figsize=(7, 0.45 * len(effects) + 1.2))
    ax = fig.add_subplot()
    labels = [label for label, _ in effects]
    means = np.array([e.delta.mean * 100 for _, e in effects])
    low = np.array([e.delta.low * 100 for _, e in effects])
    high = np.array([e.delta.high * 100 for _, e in effects])
    errors = np.nan_to_num(np.vstack([means - low, high - means]))
    colours = ["#9e9e9e" if e.within_noise else "#1f77b4" for _, e in effects]
    y = np.arange(len(effects))
    ax.barh(y, means, xerr=errors, color=colours, capsize=3)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("Δ validation accuracy (points), paired over seeds, Holm-corrected CI")
    return Plot(
        "delta.png",
        _png(fig),
        "Δ against the reference with its Holm-corrected interval; grey: within noise",
    )


def ablation_sections(doc: Document, frame: pd.DataFrame, design: dict[str, Any]) -> None:
    column = latency_figure(frame)
    table, effects = ablation_table(frame, design, column)
    doc.heading(f"Ablation: design {design['design']}, seeds {design['seeds']}")
    doc.text(
        "Accuracy is validation accuracy in percent, mean ± the half-width of its 95% "
        "Student-t interval over seeds. Δ is the mean of the paired per-seed differences to "
        "the configuration in `vs` (seed s is the same initialisation and data order in both), "
        "in points. Its interval is a t-interval at Holm's level for its rank among the "
        f"{_count(len(effects), 'comparison')} of this table (1 - 0.05 / (m - rank + 1)); "
        "`p (Holm)` is the Holm-adjusted p-value of the paired t-test. `within noise`: the "
        "adjusted p-value is at least 0.05, so the difference is not distinguished from seed "
        "noise."
    )
    doc.table(table)
    doc.text(
        f"Latency: {latency_note(frame, column)} `latency ms` is the median of these "
        "medians over the configuration's seeds, `latency IQR ms` the median of their "
        f"interquartile ranges of the timed calls."
        + ("" if column == "latency_ms_alone" else " `search remeasure --all` times them alone.")
        + " FLOPs: one batch-1 forward pass, by torch's counter (2 per multiply-add)."
    )
    combination = design.get("combination")
    if combination:
        doc.text(
            "Combination: "
            + " + ".join(combination["techniques"])
            + "".join(
                f"; rule {' x '.join(r['techniques'])}: {r['decision']}"
                for r in combination["rules"]
            )
            + "".join(f"; left out {k}: {v}" for k, v in combination["dropped"].items())
        )
    for label, why in design.get("excluded", {}).items():
        doc.text(f"Not trained: {label}: {why}")
    if effects:
        doc.figure(delta_chart(effects))


# -- a search study -----------------------------------------------------------------


Drawn = dict[str, optuna.distributions.BaseDistribution]


def _drawn(study: optuna.Study) -> Drawn:
    """Every parameter the complete trials were given, with its distribution."""
    found: Drawn = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        found.update(trial.distributions)
    return found


def _varied(drawn: Drawn, frame: pd.DataFrame, names: list[str]) -> list[str]:
    """Those of `names` the study searched and that actually varied among complete trials."""
    return [n for n in names if n in drawn and frame[n].nunique() > 1]


def _switches(drawn: Drawn, frame: pd.DataFrame) -> list[str]:
    """The searched switches and budget level."""
    names = [c for c in frame.columns if c.endswith(".enabled") or c == BUDGET_PARAM]
    return _varied(drawn, frame, names)


def _recipe(drawn: Drawn, frame: pd.DataFrame) -> list[str]:
    """The searched recipe fields (`train.lr`, ..., `model.stage_ratio`)."""
    names = [c for c in frame.columns if c.startswith(TRAIN_PREFIX) or c == STAGE_RATIO]
    return _varied(drawn, frame, names)


FANOVA_UP_TO = 1000  # complete trials; beyond, PED-ANOVA (~1000x faster at 10,000: optuna#5212)


def importance_table(
    study: optuna.Study, frame: pd.DataFrame, objectives: list[str], names: list[str]
) -> pd.DataFrame:
    """Importance of each searched parameter in `names` (switches, budget, recipe fields)
    per objective, normalised to sum to 1 per objective, over the trained trials
    (duplicates, which reused a result, would count it twice)."""
    trained = optuna.create_study(directions=study.directions)  # in memory: storage untouched
    trained.add_trials(
        [t for t in study.get_trials(deepcopy=False) if t.number in set(frame["number"])]
    )
    if len(frame) <= FANOVA_UP_TO:
        evaluator: optuna.importance.BaseImportanceEvaluator = FanovaImportanceEvaluator(seed=0)
    else:
        evaluator = PedAnovaImportanceEvaluator(target_quantile=0.1)
    table = pd.DataFrame({"parameter": names})
    for i, name in enumerate(objectives):
        sign = -1.0 if OBJECTIVES[name] == "maximize" else 1.0  # PED-ANOVA minimises

        def target(t: optuna.trial.FrozenTrial, i: int = i, sign: float = sign) -> float:
            return sign * t.values[i]

        if frame[name].nunique() < 2:  # nothing to explain
            table[name] = "constant"
            continue
        try:
            with warnings.catch_warnings():  # the sign warning: the target is oriented above
                warnings.simplefilter("ignore")
                scores = get_param_importances(
                    trained, evaluator=evaluator, params=names, target=target
                )
        except RuntimeError:  # fANOVA: every bootstrap tree saw one value (very few trials)
            table[name] = "too few trials"
            continue
        table[name] = [round(float(scores.get(s, 0.0)), 3) for s in names]
    return table


def marginal_table(frame: pd.DataFrame, switches: list[str]) -> pd.DataFrame:
    rows = []
    for name in switches:
        if not name.endswith(".enabled"):
            continue
        on = frame.loc[frame[name].astype(bool), "accuracy"]
        off = frame.loc[~frame[name].astype(bool), "accuracy"]
        diff = stats.welch(on, off)
        rows.append(
            {
                "switch": name.removesuffix(".enabled"),
                "trials on": len(on),
                "accuracy % on": _pm(stats.t_interval(on)),
                "trials off": len(off),
                "accuracy % off": _pm(stats.t_interval(off)),
                "Δ points (on - off)": f"{diff.mean * 100:+.2f}",
                "95% CI (Welch)": _range(diff),
                "covers 0": "yes" if diff.covers(0.0) else "no",
            }
        )
    return pd.DataFrame(rows)


def recipe_choice_table(frame: pd.DataFrame, choices: list[str]) -> pd.DataFrame:
    """Validation accuracy per value of each recipe field searched among choices."""
    rows = []
    for name in choices:
        for value, group in frame.groupby(name, sort=True)["accuracy"]:
            rows.append(
                {
                    "field": name,
                    "value": value,
                    "trials": len(group),
                    "accuracy % (95% CI)": _pm(stats.t_interval(group)),
                    "best %": f"{group.max() * 100:.2f}",
                }
            )
    return pd.DataFrame(rows)


def recipe_range_figure(frame: pd.DataFrame, ranges: list[str], log: dict[str, bool]) -> Plot:
    """Validation accuracy against each recipe field searched over a range."""
    fig = Figure(figsize=(4.0 * len(ranges), 3.5))
    for i, name in enumerate(ranges):
        ax = fig.add_subplot(1, len(ranges), i + 1)
        ax.scatter(frame[name], frame["accuracy"] * 100, color="#1f77b4")
        if log[name]:  # labelled at 1, 2 and 5 times each power of ten
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
            for axis_format in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
                axis_format(ticker.StrMethodFormatter("{x:g}"))
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy %")
    fig.tight_layout()
    return Plot("recipe.png", _png(fig), "Accuracy against each recipe field searched in a range")


def recipe_sections(doc: Document, frame: pd.DataFrame, fields: list[str], drawn: Drawn) -> None:
    """How accuracy varied with each searched recipe field: per choice, and against ranges."""
    if not fields:
        return
    choices = [
        n for n in fields if isinstance(drawn[n], optuna.distributions.CategoricalDistribution)
    ]
    ranges = [n for n in fields if n not in choices]
    doc.heading("Accuracy by recipe value")
    doc.text(
        "Validation accuracy of the complete trials per value of each recipe field searched "
        "among choices (95% t-intervals), and against each one searched in a range. The "
        "sampler chose the trials: other parameters differ between the groups."
    )
    if choices:
        doc.table(recipe_choice_table(frame, choices))
    if ranges:
        log = {n: bool(getattr(drawn[n], "log", False)) for n in ranges}
        doc.figure(recipe_range_figure(frame, ranges, log))


def reference_point(frame: pd.DataFrame, objectives: list[str]) -> list[float]:
    """Accuracy 0 for maximised accuracy; 1.1 x the worst value seen for a minimised one."""
    return [0.0 if OBJECTIVES[o] == "maximize" else 1.1 * float(frame[o].max()) for o in objectives]


def hypervolume_history(frame: pd.DataFrame, objectives: list[str]) -> list[float]:
    """Hypervolume of the front of the first k complete trials, for each k (trial order)."""
    signs = np.array([-1.0 if OBJECTIVES[o] == "maximize" else 1.0 for o in objectives])
    reference = signs * np.array(reference_point(frame, objectives))
    points = signs * frame.sort_values("number")[objectives].to_numpy(dtype=float)
    history = []
    for k in range(1, len(points) + 1):
        inside = points[:k][(points[:k] <= reference).all(axis=1)]
        history.append(compute_hypervolume(inside, reference) if len(inside) else 0.0)
    return history


def pareto_figures(frame: pd.DataFrame, latency_column: str) -> list[Plot]:
    front = frame[frame["pareto"]]
    figures = []
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    ax.scatter(frame[latency_column], frame["accuracy"] * 100, color="#bbbbbb", label="trials")
    ax.scatter(front[latency_column], front["accuracy"] * 100, color="#d62728", label="Pareto")
    ax.set_xlabel(f"latency ms ({latency_column})")
    ax.set_ylabel("validation accuracy %")
    ax.legend()
    figures.append(Plot("pareto_latency.png", _png(fig), "Accuracy vs latency"))

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    points = ax.scatter(
        frame["params"], frame["accuracy"] * 100, c=frame[latency_column], cmap="viridis"
    )
    ax.scatter(
        front["params"], front["accuracy"] * 100, facecolors="none", edgecolors="#d62728", s=90
    )
    fig.colorbar(points, ax=ax, label=f"latency ms ({latency_column})")
    ax.set_xlabel("parameters (counted)")
    ax.set_ylabel("validation accuracy %")
    figures.append(
        Plot(
            "pareto_params.png",
            _png(fig),
            "Accuracy vs parameters, coloured by latency; circled: Pareto-optimal",
        )
    )
    return figures


def search_sections(
    doc: Document, study: optuna.Study, frame: pd.DataFrame, objectives: list[str]
) -> None:
    drawn = _drawn(study)
    switches, recipe = _switches(drawn, frame), _recipe(drawn, frame)
    front = frame[frame["pareto"]].sort_values("accuracy", ascending=False)
    doc.heading(f"Pareto front: {', '.join(objectives)}")
    doc.text(
        f"{len(front)} of {len(frame)} complete trials are Pareto-optimal on the objectives "
        f"{', '.join(objectives)} (validation accuracy)."
    )
    table = pd.DataFrame({"trial": front["number"]})
    timed_alone = bool(front["latency_ms_alone"].notna().all())
    shown = [*objectives, "params", "latency_ms", *(["latency_ms_alone"] * timed_alone)]
    for name in dict.fromkeys(shown):
        values = front[name]
        if name == "accuracy":
            table["accuracy %"] = [f"{v * 100:.2f}" for v in values]
        elif name.startswith("latency"):
            table[name] = [f"{v:.4f}" for v in values]
        else:
            table[name] = values.astype(int)
    table["techniques"] = [
        " + ".join(c.removesuffix(".enabled") for c in front if c.endswith(".enabled") and r[c])
        or "(none)"
        for _, r in front.iterrows()
    ]
    for name in recipe:  # what each trial trained with, when it was searched
        table[name] = [f"{v:.3g}" if isinstance(v, float) else v for v in front[name]]
    if "test_accuracy" in front:
        table["test accuracy %"] = [f"{v * 100:.2f}" for v in front["test_accuracy"]]
    doc.table(table)
    doc.text(f"Latency: {latency_note(front, 'latency_ms')}")
    if timed_alone:
        doc.text(f"{latency_note(front, 'latency_ms_alone')} The front was chosen on latency_ms.")
    else:
        doc.text("The front was not timed alone: `search remeasure STUDY` does it.")
    doc.text("The figures show latency_ms, measured the same way for every trial.")
    for figure in pareto_figures(frame, "latency_ms"):
        doc.figure(figure)

    if len(objectives) > 1:
        reference = reference_point(frame, objectives)
        history = hypervolume_history(frame, objectives)
        fig = Figure(figsize=(6.5, 3.5))
        ax = fig.add_subplot()
        ax.plot(sorted(frame["number"]), history, marker="o")
        ax.set_xlabel("trial number")
        ax.set_ylabel("hypervolume")
        doc.heading("Hypervolume")
        doc.text(
            f"Hypervolume of the front of the complete trials so far, in the objectives' own "
            f"units, against the reference point {dict(zip(objectives, reference, strict=True))} "
            "(accuracy 0; 1.1 x the worst value of each minimised objective): final "
            f"{history[-1]:.6g}."
        )
        doc.figure(Plot("hypervolume.png", _png(fig), "Hypervolume over trials"))

    doc.heading("Importance of each searched parameter per objective")
    if len(frame) < 4 or not switches + recipe:
        doc.text("Too few complete trials, or no parameter that varied, to estimate importance.")
    else:
        doc.text(
            "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0): the share of each "
            "objective's variance across the trained trials that each parameter explains, "
            "normalised to sum to 1 per objective."
            if len(frame) <= FANOVA_UP_TO
            else "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator): how much each "
            "parameter decides whether a trial is among the best 10% of one objective, "
            "normalised to sum to 1 per objective."
        )
        doc.table(importance_table(study, frame, objectives, switches + recipe))
    doc.heading("Marginal effect of each switch on accuracy")
    doc.text(
        "Mean validation accuracy of the complete trials with the switch on and with it off "
        "(95% t-intervals), and the difference with Welch's 95% interval. The trials were "
        "chosen by the sampler, not balanced: other switches differ between the groups."
    )
    doc.table(marginal_table(frame, switches))
    recipe_sections(doc, frame, recipe, drawn)


# -- provenance and the whole report ------------------------------------------------


def provenance_section(
    doc: Document, study: optuna.Study, config: StudyConfig, frame: pd.DataFrame, tested: bool
) -> None:
    doc.heading("Provenance")
    recorded = study.user_attrs.get(provenance.ATTR)
    now = provenance.environment()
    doc.table(
        pd.DataFrame(
            {
                "": list(now),
                "run (recorded at the study's first run)": [
                    (recorded or {}).get(k, "not recorded") for k in now
                ],
                "this report": list(now.values()),
            }
        )
    )
    pairs = zip(frame["device"], frame["threads"], strict=True)
    devices = ", ".join(sorted({f"{d} x {t} threads" for d, t in pairs}))
    doc.text(
        f"Trials ran on: {devices}. Data split fingerprint (SHA-256 of the training and "
        f"validation images and labels): {(recorded or {}).get('split', 'not recorded')}. "
        f"Space hash: {provenance.space_hash(config.space_source)}; epochs "
        f"{config.epochs or 'as in the space'}; study seed {config.seed}."
    )
    doc.text(
        "Test set: used only for the test-accuracy column, after every selection; nothing was "
        "chosen on it."
        if tested
        else "Test set: not used. Every number is on the validation split."
    )


def build(
    study: optuna.Study,
    config: StudyConfig,
    test_accuracy: Callable[[int], float] | None = None,
) -> Document:
    """The report of `study`; `test_accuracy(trial number)` adds the test column."""
    frame = trials_frame(study, config)
    space = config.space()
    doc = Document(f"Study {study.study_name}: {space.name}")
    if frame.empty:
        doc.text("No complete trials yet.")
        return doc
    design = study.user_attrs.get("ablation")
    if test_accuracy is not None:
        numbers = frame["number"] if design else frame.loc[frame["pareto"], "number"]
        frame.loc[numbers.index, "test_accuracy"] = [test_accuracy(int(n)) for n in numbers]
    doc.text(
        f"{len(frame)} complete trials of {len(study.trials)}; objectives "
        f"{', '.join(space.objectives)}; accuracy on the validation split."
    )
    if design:
        ablation_sections(doc, frame, design)
    else:
        search_sections(doc, study, frame, list(space.objectives))
    provenance_section(doc, study, config, frame, test_accuracy is not None)
    return doc


def write(doc: Document, directory: Path) -> list[Path]:
    """Write report.md, report.html and the figures into `directory`; each file whole."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {f.name: f.png for f in doc.figures}
    files["report.md"] = doc.markdown().encode()
    files["report.html"] = doc.html().encode()
    written = []
    for name, data in files.items():
        path = directory / name
        partial = path.with_name(name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        written.append(path)
    return written
