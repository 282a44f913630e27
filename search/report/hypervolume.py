"""The hypervolume of a search study's front as it grew, trial by trial, against a fixed
reference point that the report states (optuna#4748). Optuna's exact algorithm is private
API (`optuna._hypervolume`): `hypervolume` is its only caller, so an upgrade that moves or
changes it fails one import and tests/search/test_report_hypervolume.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from optuna._hypervolume import compute_hypervolume  # Optuna's exact WFG algorithm

from search.report.document import Document, Plot, _png
from spaces.space import OBJECTIVES


def reference_point(frame: pd.DataFrame, objectives: list[str]) -> list[float]:
    """Accuracy 0 for maximised accuracy; 1.1 x the worst value seen for a minimised one."""
    return [0.0 if OBJECTIVES[o] == "maximize" else 1.1 * float(frame[o].max()) for o in objectives]


def hypervolume(values: np.ndarray, objectives: list[str], reference: list[float]) -> float:
    """The volume the points `values` (a row per trial, a column per objective, in the
    objectives' own units and directions) dominate up to `reference`. Optuna minimises every
    objective, so maximised ones are negated; a point worse than the reference in any
    objective adds nothing, and no point inside gives 0."""
    signs = np.array([-1.0 if OBJECTIVES[o] == "maximize" else 1.0 for o in objectives])
    losses = signs * np.asarray(values, dtype=float)
    bound = signs * np.array(reference, dtype=float)
    inside = losses[(losses <= bound).all(axis=1)]
    return float(compute_hypervolume(inside, bound)) if len(inside) else 0.0


def hypervolume_history(frame: pd.DataFrame, objectives: list[str]) -> list[float]:
    """Hypervolume of the front of the first k complete trials, for each k (trial order)."""
    reference = reference_point(frame, objectives)
    values = frame.sort_values("number")[objectives].to_numpy(dtype=float)
    return [hypervolume(values[:k], objectives, reference) for k in range(1, len(values) + 1)]


def hypervolume_section(doc: Document, frame: pd.DataFrame, objectives: list[str]) -> None:
    """The hypervolume over the trials, as a figure, with the reference point it is taken at."""
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
