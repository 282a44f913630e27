"""An ablation study's section (`search ablate`): the paper's table, per configuration its
accuracy over seeds and its paired difference to its reference with Holm-corrected
intervals (`search/stats.py`), and the chart of those differences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from search import stats
from search.report.document import Document, Plot, _png
from search.report.formats import _pm, _range
from search.report.trials import latency_figure, latency_note


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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
