"""An ablation study's section (`search ablate`): the paper's table, per configuration its
accuracy over seeds and its paired difference to its reference with its interval, verdict
and, while unresolved, the seeds it would need; the procedure named; and the chart of the
differences. Fixed seeds: paired t-tests with Holm's step-down (`search/stats.py`);
`--seeds auto`: the group-sequential procedure the rounds ran (`search/sequential.py`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from search import ablate, seeds, stats
from search.progress import named
from search.report.document import Document, Plot, _png
from search.report.formats import _mflops, _pm, _range, _thousands
from search.report.trials import latency_figure, latency_note
from search.sequential import (
    POWER,
    PROCEDURE,
    SEEDS_NEEDED_CAP,
    Plan,
    Verdict,
    sequential_verdicts,
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Compared:
    """A configuration against its reference: the per-seed paired differences, the interval
    of their mean the verdict was read from, the adjusted p-value, the verdict and, while it
    is unresolved, the seeds its observed mean and spread suggest it needs."""

    label: str
    reference: str
    differences: list[float]
    delta: stats.Interval
    p_adjusted: float
    verdict: str  # one of STYLES
    seeds_needed: int | None

    @staticmethod
    def fixed(
        comparison: ablate.Comparison,
        differences: list[float],
        effect: stats.Effect,
        one_look: Verdict | None,
    ) -> Compared:
        """From the paired t-test with Holm's step-down (`stats.effects`); `one_look`: the
        same test as a sequential plan of one look, for the seeds it needs."""
        verdict = NOISE if effect.within_noise else GAIN if effect.delta.mean > 0 else LOSS
        return Compared(
            comparison.label,
            comparison.reference,
            differences,
            effect.delta,
            effect.p_holm,
            verdict,
            one_look.seeds_needed if one_look and effect.within_noise else None,
        )

    @staticmethod
    def sequential(
        comparison: ablate.Comparison, differences: list[float], verdict: Verdict
    ) -> Compared:
        """From the group-sequential procedure of `--seeds auto` (`search.sequential`)."""
        kind = {1: GAIN, -1: LOSS}.get(verdict.sign, NEGLIGIBLE if verdict.negligible else NOISE)
        return Compared(
            comparison.label,
            comparison.reference,
            differences,
            verdict.interval,
            verdict.p_adjusted,
            kind + (", below the min effect" if verdict.sign and verdict.negligible else ""),
            verdict.seeds_needed,
        )

    @property
    def style(self) -> str:
        return self.verdict.split(",")[0]

    @property
    def needed(self) -> str:
        """`seeds needed` as the table shows it: `> 100` past the cap, empty when resolved or
        when it cannot be told (one seed, or no spread)."""
        if self.seeds_needed is not None:
            return str(self.seeds_needed)
        spread = len(self.differences) > 1 and float(np.std(self.differences)) > 0
        return f"> {SEEDS_NEEDED_CAP}" if self.style == NOISE and spread else ""


# The chart's verdicts: colour-blind-safe hues (blue, vermilion), noise grey and hatched, and
# (with --min-effect) negligible, plain grey.
GAIN, LOSS, NOISE, NEGLIGIBLE = "resolved gain", "resolved loss", "within noise", "negligible"
STYLES = {
    GAIN: {"color": "#0072b2"},
    LOSS: {"color": "#d55e00"},
    NOISE: {"color": "#d0d0d0", "hatch": "//", "edgecolor": "#8c8c8c"},
    NEGLIGIBLE: {"color": "#8c8c8c"},
}


def compare(
    accuracy: dict[str, dict[int, float]], design: dict[str, Any], plan: Plan | None
) -> list[Compared]:
    """Every comparison of the design whose two configurations share a trained seed: with
    `plan` (`--seeds auto`) by its sequential procedure, else by the paired t-test with Holm."""
    comparisons = [
        c
        for c in ablate.comparisons(design)
        if c.trained in accuracy and c.reference_trained in accuracy
    ]
    differences = seeds.differences(comparisons, accuracy)
    kept = [(c, d) for c, d in zip(comparisons, differences, strict=True) if d]
    found = [d for _, d in kept]
    if plan is not None:
        verdicts = sequential_verdicts(found, plan)
        return [Compared.sequential(c, d, v) for (c, d), v in zip(kept, verdicts, strict=True)]
    most = max(map(len, found), default=0)
    looks = sequential_verdicts(found, Plan(most, most)) if most >= 2 else [None] * len(kept)
    return [
        Compared.fixed(c, d, e, v)
        for (c, d), e, v in zip(kept, stats.effects(found), looks, strict=True)
    ]


def ablation_table(
    frame: pd.DataFrame, design: dict[str, Any], latency_column: str, plan: Plan | None = None
) -> tuple[pd.DataFrame, list[Compared]]:
    """One row per configuration label (a configuration trained once under several labels
    appears under each), and the comparisons with the references (`compare`)."""
    accuracy = {
        label: dict(zip(group["seed"], group["accuracy"], strict=True))
        for label, group in frame.groupby("config")
    }
    compared = compare(accuracy, design, plan)
    compared_as = {c.label: c for c in compared}
    kind = "Holm" if plan is None else "repeated"
    delta_ci = f"Δ CI ({kind}, {_count(len(compared), 'test')})"
    columns = ["configuration", "techniques", "seeds", "accuracy % (95% CI)", "vs", "Δ points"]
    columns += [delta_ci, "p (Holm)", "verdict", "seeds needed", "params", "MFLOPs"]
    columns += ["latency ms", "latency IQR ms"]
    if "test_accuracy" in frame:
        columns.append("test accuracy %")
    rows = []
    for c in design["configs"]:
        for label in (c["label"], *c.get("also", ())):
            group = frame[frame["config"] == c["label"]]
            row: dict[str, Any] = dict.fromkeys(columns, "")
            row.update(
                {
                    "configuration": label,
                    # What its trials trained, techniques the space fixes on included; the
                    # design's switches alone until one has trained.
                    "techniques": group["techniques"].iloc[0]
                    if not group.empty
                    else named(c["techniques"]),
                    "seeds": len(group),
                }
            )
            if group.empty:
                rows.append(row)
                continue
            row["accuracy % (95% CI)"] = _pm(stats.t_interval(group["accuracy"]))
            found = compared_as.get(label)
            if found is not None:
                row["vs"] = found.reference
                row["Δ points"] = f"{found.delta.mean * 100:+.2f}"
                row[delta_ci] = _range(found.delta)
                row["p (Holm)"] = "" if math.isnan(found.p_adjusted) else f"{found.p_adjusted:.3g}"
                row["verdict"] = found.verdict
                row["seeds needed"] = found.needed
            row["params"] = _thousands(group["params"].median())
            flops = group["flops"]
            row["MFLOPs"] = _mflops(flops.median()) if flops.notna().all() else ""
            row["latency ms"] = f"{group[latency_column].median():.4f}"
            iqr = group[latency_column.replace("latency_ms", "latency_iqr_ms")]
            row["latency IQR ms"] = f"{iqr.median():.4f}" if iqr.notna().all() else ""
            if "test_accuracy" in group:
                row["test accuracy %"] = _pm(stats.t_interval(group["test_accuracy"]))
            rows.append(row)
    return pd.DataFrame(rows), compared


def delta_chart(compared: list[Compared], interval: str) -> Plot:
    return Plot(
        "delta.png",
        _png(delta_figure(compared, interval)),
        f"Δ against the reference with its {interval}, and each seed's paired difference "
        "(dots); blue: resolved gain, vermilion: resolved loss, grey hatched: within noise, "
        "plain grey: negligible",
    )


def delta_figure(compared: list[Compared], interval: str = "Holm-corrected CI") -> Figure:
    """A bar per comparison, styled by its verdict, with each seed's paired difference."""
    fig = Figure(figsize=(7, 0.45 * len(compared) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(compared))
    for verdict, style in STYLES.items():
        chosen = [i for i, c in enumerate(compared) if c.style == verdict]
        if chosen:
            deltas = [compared[i].delta for i in chosen]
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
    ax.set_xlabel(f"Δ validation accuracy (points), paired over seeds, {interval}")
    ax.legend(loc="best", fontsize="small")
    return fig


def ablation_sections(
    doc: Document, frame: pd.DataFrame, design: dict[str, Any], plan: Plan | None
) -> None:
    """The design's table, how its verdicts were reached, and the chart; `plan`: the
    sequential plan of a design run with `--seeds auto`, None for fixed seeds."""
    column = latency_figure(frame)
    table, compared = ablation_table(frame, design, column, plan)
    m = _count(len(compared), "comparison")
    shown = "accuracy in percent, mean ± the half-width of its 95% Student-t interval over seeds"
    paired = (
        "Δ is the mean of the paired per-seed differences to the configuration in `vs` (seed s "
        "is the same initialisation and data order in both), in points."
    )
    if plan is None:
        doc.heading(f"Ablation: design {design['design']}, seeds {design['seeds']}")
        doc.text(
            f"Procedure: paired t-tests, Holm's step-down across the {m} of this table, one "
            f"look at the seeds trained. Validation {shown}. {paired} Its interval is a "
            "t-interval at Holm's level for its rank (1 - 0.05 / (m - rank + 1)); `p (Holm)` is "
            "the Holm-adjusted p-value of the paired t-test. `within noise`: the adjusted "
            "p-value is at least 0.05, so the difference is not distinguished from seed noise. "
            "`seeds needed`: for one within noise, the seeds at which this test would resolve "
            f"it with {POWER:.0%} power if its observed mean and spread held (noncentral t; "
            "empty where that cannot be told: one seed, or no spread)."
        )
    else:
        seeds = f"{plan.min_seeds}..{plan.max_seeds}"
        effect = (
            f"; `negligible`: its interval lies within ±{plan.min_effect * 100:g} points "
            "(--min-effect)"
            if plan.min_effect
            else ""
        )
        doc.heading(f"Ablation: design {design['design']}, seeds auto ({seeds})")
        doc.text(
            f"Procedure (--seeds auto, {seeds} seeds): {PROCEDURE} (search/sequential.py). "
            f"Every configuration trained {plan.min_seeds} seeds; after each round the "
            "reference and each configuration whose comparison was still open got one more "
            f"paired seed, up to {plan.max_seeds}: `seeds` is what each trained. Looking after "
            f"every round keeps the family-wise error across the {m} at 5% (simulated: "
            "tests/search/test_sequential.py, bench/bench_sequential.py). "
            f"Validation {shown}. {paired} Its interval is the repeated confidence interval of "
            "the look that decided it (else the last), `p (Holm)` its sequential p-value after "
            "Holm's closed test; `verdict` is read from that interval (`within noise`: it "
            f"covers 0{effect}). `seeds needed`: for one within noise, the seeds at which the "
            f"procedure would resolve it with {POWER:.0%} power if its observed mean and spread "
            "held (empty where that cannot be told: one seed, or no spread)."
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
        doc.figure(delta_chart(compared, "Holm-corrected CI" if plan is None else "repeated CI"))
