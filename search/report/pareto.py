"""A search study's front section: the noise-aware Pareto front of its configurations
(`search.configurations`), with the rule that drops a trial only noise kept on the strict
front (`search.front.RULE`) stated, each configuration at its mean over its seeds with its
band (each objective's noise half-width, which another configuration must clear to beat
it) as error bars on the figure; or, with `--strict-front`, Optuna's strict front of single
trials as measured."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
import pandas as pd
from matplotlib.figure import Figure

from search import configurations, front, stats
from search.report.document import Document, Plot, _png
from search.report.formats import _pm, _thousands
from search.report.trials import latency_note
from spaces.space import OBJECTIVES


@dataclass(frozen=True)
class Point:
    """A point of the front: its trials (one per seed), and per objective their mean and its
    noise half-width (0 on the strict front, which takes every trial as measured)."""

    numbers: tuple[int, ...]
    means: dict[str, float]
    noise: dict[str, float]


def front_points(
    study: optuna.Study, frame: pd.DataFrame, objectives: list[str], strict: bool
) -> list[Point]:
    """The front's points, most accurate first: the noise-aware front's configurations, or
    with `strict` Optuna's Pareto-optimal trials."""
    if strict:
        points = [
            Point(
                (int(row["number"]),),
                {o: row[o] for o in objectives},
                dict.fromkeys(objectives, 0.0),
            )
            for _, row in frame[frame["pareto"]].iterrows()
        ]
    else:
        directions = [OBJECTIVES[o] for o in objectives]
        trials = study.get_trials(deepcopy=False)
        points = [
            Point(
                c.numbers,
                dict(zip(objectives, c.means, strict=True)),
                dict(zip(objectives, c.noise, strict=True)),
            )
            for c in configurations.noise_aware_front(trials, objectives, directions)
        ]
    return sorted(points, key=lambda p: -p.means.get("accuracy", 0.0))


def front_table(
    points: list[Point], frame: pd.DataFrame, objectives: list[str], recipe: list[str], strict: bool
) -> pd.DataFrame:
    """A row per point: its trials, each objective's mean (accuracy with its 95% interval over
    seeds, latency ± its band), what it trained with, and its test accuracy if measured."""
    by_number = frame.set_index("number")
    rows = []
    for point in points:
        group = by_number.loc[list(point.numbers)]
        first = group.iloc[0]
        row: dict[str, object] = {"trials": ", ".join(map(str, point.numbers)), "seeds": len(group)}
        timed_alone = bool(group["latency_ms_alone"].notna().all())
        for name in dict.fromkeys([*objectives, "params", "latency_ms"]):
            mean, noise = point.means.get(name, group[name].mean()), point.noise.get(name, 0.0)
            if name == "accuracy":
                interval = stats.t_interval(group["accuracy"])
                row["accuracy %"] = f"{mean * 100:.2f}" if strict else _pm(interval)
            elif name.startswith("latency"):
                row[name] = f"{mean:.4f}" + (f" ± {noise:.4f}" if noise else "")
            else:
                row[name] = _thousands(mean)
        row["latency_ms_alone"] = f"{group['latency_ms_alone'].mean():.4f}" if timed_alone else ""
        row["techniques"] = first["techniques"]
        for name in recipe:  # what it trained with, when it was searched
            value = first[name]
            row[name] = f"{value:.3g}" if isinstance(value, float) else value
        if "test_accuracy" in group:
            row["test accuracy %"] = _pm(stats.t_interval(group["test_accuracy"]))
        rows.append(row)
    return pd.DataFrame(rows)


def front_section(
    doc: Document,
    study: optuna.Study,
    frame: pd.DataFrame,
    objectives: list[str],
    recipe: list[str],
    strict: bool,
) -> None:
    """The front as a table, how it was chosen, and its figures."""
    points = front_points(study, frame, objectives, strict)
    numbers = [n for p in points for n in p.numbers]
    trials = frame[frame["number"].isin(numbers)]
    named = ", ".join(objectives)
    if strict:
        doc.heading(f"Pareto front (strict): {named}")
        doc.text(
            f"{len(points)} of {len(frame)} complete trials are on Optuna's strict Pareto front "
            f"of the objectives {named} (validation accuracy), as measured: any difference keeps "
            "a trial on it, noise included. `search report` without --strict-front shows the "
            "noise-aware front of configurations."
        )
    else:
        strict_front = set(frame.loc[frame["pareto"], "number"])
        doc.heading(f"Pareto front (noise-aware): {named}")
        doc.text(
            f"{len(points)} configurations ({len(numbers)} trials) of the {len(frame)} complete "
            f"trials are on the noise-aware Pareto front of the objectives {named} (validation "
            f"accuracy). {front.RULE} A row is a configuration: its trials, one per seed, and "
            "each objective's mean over them; accuracy with its 95% interval over seeds and "
            "latency_ms ± its noise, the band another configuration must clear to beat it (the "
            f"error bars of the first figure). Optuna's strict front holds {len(strict_front)} "
            "trials, "
            f"{len(strict_front - set(numbers))} of them not on this one (`search report "
            "--strict-front` shows it)."
        )
    doc.table(front_table(points, frame, objectives, recipe, strict))
    doc.text(f"Latency: {latency_note(trials, 'latency_ms')}")
    if trials["latency_ms_alone"].notna().all():
        doc.text(f"{latency_note(trials, 'latency_ms_alone')} The front was chosen on latency_ms.")
    else:
        doc.text("The front was not timed alone: `search remeasure STUDY` does it.")
    doc.text("The figures show latency_ms, measured the same way for every trial.")
    for figure in pareto_figures(frame, points, strict):
        doc.figure(figure)


def pareto_figures(frame: pd.DataFrame, points: list[Point], strict: bool) -> list[Plot]:
    """Accuracy against latency (the front's points with their bands) and against size."""
    kind = "Pareto (strict)" if strict else "noise-aware front, ± band"
    figures = []
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    ax.scatter(frame["latency_ms"], frame["accuracy"] * 100, color="#bbbbbb", label="trials")
    ax.errorbar(
        [_mean(frame, p, "latency_ms") for p in points],
        [_mean(frame, p, "accuracy") * 100 for p in points],
        xerr=[p.noise.get("latency_ms", 0.0) for p in points],
        yerr=[p.noise.get("accuracy", 0.0) * 100 for p in points],
        fmt="o",
        color="#d62728",
        capsize=3,
        label=kind,
    )
    ax.set_xlabel("latency ms (latency_ms)")
    ax.set_ylabel("validation accuracy %")
    ax.legend()
    caption = (
        "Accuracy vs latency; red: Optuna's strict front"
        if strict
        else "Accuracy vs latency; red: the noise-aware front, each configuration at its mean "
        "over seeds with its band (error bars: each objective's noise half-width by the rule)"
    )
    figures.append(Plot("pareto_latency.png", _png(fig), caption))

    on = frame[frame["number"].isin([n for p in points for n in p.numbers])]
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    shown = ax.scatter(
        frame["params"], frame["accuracy"] * 100, c=frame["latency_ms"], cmap="viridis"
    )
    ax.scatter(on["params"], on["accuracy"] * 100, facecolors="none", edgecolors="#d62728", s=90)
    fig.colorbar(shown, ax=ax, label="latency ms (latency_ms)")
    ax.set_xlabel("parameters (counted)")
    ax.set_ylabel("validation accuracy %")
    circled = "on Optuna's strict front" if strict else "a seed of a configuration on the front"
    figures.append(
        Plot(
            "pareto_params.png",
            _png(fig),
            f"Accuracy vs parameters, coloured by latency; circled: {circled}",
        )
    )
    return figures


def _mean(frame: pd.DataFrame, point: Point, column: str) -> float:
    """A point's mean of `column`: its objective mean, else the mean over its trials."""
    if column in point.means:
        return point.means[column]
    return float(frame.loc[frame["number"].isin(point.numbers), column].mean())
