"""A search study's sections (`search run`): its Pareto front, the importance of each
searched parameter, each switch's marginal effect on accuracy and, when the recipe is
searched, accuracy by recipe value. The front and the hypervolume have their own modules."""

from __future__ import annotations

import warnings

import optuna
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure
from optuna.importance import (
    FanovaImportanceEvaluator,
    PedAnovaImportanceEvaluator,
    get_param_importances,
)
from optuna.trial import TrialState

from search import stats
from search.report.document import Document, Plot, _png
from search.report.formats import _pm, _range
from search.report.hypervolume import hypervolume_section
from search.report.pareto import front_section
from spaces.space import BUDGET_PARAM, MODEL_PREFIX, OBJECTIVES, TRAIN_PREFIX

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
    """The searched recipe fields (`train.lr`, ..., `model.stage_ratio`,
    `model.stages[0].blocks`); `_varied` leaves out the columns no trial drew."""
    names = [c for c in frame.columns if c.startswith((TRAIN_PREFIX, MODEL_PREFIX))]
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


def search_sections(
    doc: Document,
    study: optuna.Study,
    frame: pd.DataFrame,
    objectives: list[str],
    strict_front: bool = False,
) -> None:
    drawn = _drawn(study)
    switches, recipe = _switches(drawn, frame), _recipe(drawn, frame)
    front_section(doc, study, frame, objectives, recipe, strict_front)

    if len(objectives) > 1:
        hypervolume_section(doc, frame, objectives)

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
    if any(n.endswith(".enabled") for n in switches):
        doc.table(marginal_table(frame, switches))
    else:
        doc.text("No searched switch was both on and off among the complete trials.")
    recipe_sections(doc, frame, recipe, drawn)
