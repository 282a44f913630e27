"""An ablation study's section (`search ablate`): the paper's table, per configuration its
accuracy over seeds and its paired difference to its reference with Holm-corrected
intervals (`search/stats.py`), and the chart of those differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from search import stats
from search.export import named
from search.report.document import Document, Plot, _png
from search.report.formats import _mflops, _pm, _range, _thousands
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


@dataclass(frozen=True)
class Compared:
    """A configuration against its reference: Holm's verdict and the per-seed differences."""

    label: str
    effect: stats.Effect
    differences: list[float]

    @property
    def verdict(self) -> str:
        if self.effect.within_noise:
            return NOISE
        return GAIN if self.effect.delta.mean > 0 else LOSS


# The chart's three verdicts: colour-blind-safe hues (blue, vermilion), noise grey and hatched.
GAIN, LOSS, NOISE = "resolved gain", "resolved loss", "within noise"
STYLES = {
    GAIN: {"color": "#0072b2"},
    LOSS: {"color": "#d55e00"},
    NOISE: {"color": "#d0d0d0", "hatch": "//", "edgecolor": "#8c8c8c"},
}


def ablation_table(
    frame: pd.DataFrame, design: dict[str, Any], latency_column: str
) -> tuple[pd.DataFrame, list[Compared]]:
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
    columns += [delta_ci, "p (Holm)", "within noise", "params", "MFLOPs"]
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
                "techniques": named(techniques),
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
        row["params"] = _thousands(group["params"].median())
        row["MFLOPs"] = _mflops(group["flops"].median()) if group["flops"].notna().all() else ""
        row["latency ms"] = f"{group[latency_column].median():.4f}"
        iqr = group[latency_column.replace("latency_ms", "latency_iqr_ms")]
        row["latency IQR ms"] = f"{iqr.median():.4f}" if iqr.notna().all() else ""
        if "test_accuracy" in group:
            row["test accuracy %"] = _pm(stats.t_interval(group["test_accuracy"]))
        rows.append(row)
    return pd.DataFrame(rows), [
        Compared(label, e, diffs) for (label, _, diffs), e in zip(compared, effects, strict=True)
    ]


def delta_chart(compared: list[Compared]) -> Plot:
    return Plot(
        "delta.png",
        _png(delta_figure(compared)),
        "Δ against the reference with its Holm-corrected interval, and each seed's paired "
        "difference (dots); blue: resolved gain, vermilion: resolved loss, grey hatched: within "
        "noise",
    )


def delta_figure(compared: list[Compared]) -> Figure:
    """A bar per comparison, styled by its verdict, with each seed's paired difference."""
    fig = Figure(figsize=(7, 0.45 * len(compared) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(compared))
    for verdict, style in STYLES.items():
        chosen = [i for i, c in enumerate(compared) if c.verdict == verdict]
        if chosen:
            deltas = [compared[i].effect.delta for i in chosen]
            means = np.array([d.mean for d in deltas]) * 100
            spans = np.array([[d.mean - d.low, d.high - d.mean] for d in deltas]).T * 100
            ax.barh(chosen, means, xerr=np.nan_to_num(spans), capsize=3, label=verdict, **style)
    for i, c in enumerate(compared):  # each seed's paired difference, spread a little apart
        spread = np.linspace(-0.15, 0.15, len(c.differences)) if len(c.differences) > 1 else [0.0]
        ax.scatter(
            np.array(c.differences) * 100,
            i + np.asarray(spread),
            s=14,
            color="black",
            zorder=3,
            label="a seed's Δ" if i == 0 else None,
        )
    ax.set_yticks(y, [c.label for c in compared])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("Δ validation accuracy (points), paired over seeds, Holm-corrected CI")
    ax.legend(loc="best", fontsize="small")
    return fig


def ablation_sections(doc: Document, frame: pd.DataFrame, design: dict[str, Any]) -> None:
    column = latency_figure(frame)
    table, compared = ablation_table(frame, design, column)
    doc.heading(f"Ablation: design {design['design']}, seeds {design['seeds']}")
    doc.text(
        "Accuracy is validation accuracy in percent, mean ± the half-width of its 95% "
        "Student-t interval over seeds. Δ is the mean of the paired per-seed differences to "
        "the configuration in `vs` (seed s is the same initialisation and data order in both), "
        "in points. Its interval is a t-interval at Holm's level for its rank among the "
        f"{_count(len(compared), 'comparison')} of this table (1 - 0.05 / (m - rank + 1)); "
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
        + " MFLOPs: millions of FLOPs of one batch-1 forward pass, by torch's counter (2 per "
        "multiply-add)."
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
    if compared:
        doc.figure(delta_chart(compared))
