"""A study's seeds beyond the first: which trials to queue so that configurations are
trained with paired seeds, where they are needed.

`search run --seeds K`: every configuration the sampler proposes trains with the K paired
seeds seed, seed + 1, ..., each its own trial and row, with the configuration's parameters
and its `seed` attribute. The sampler proposes at the study's seed; before it proposes
again, `top_up` queues the seeds each configuration that trained lacks, so the K seeds of a
configuration run side by side. Each seed's trial tells the sampler its own values: a
finished Optuna trial cannot be told again, so no trial could carry the mean before every
seed is in, and the sampler seeing the K measurements of one point is what it would learn
from the mean, with its noise. The front, the report and the progress lines take the mean
over seeds (`search.configurations`, `search.progress.leader`).

`search ablate --seeds auto`: a design trains `seeds` (the minimum) per configuration first.
When that round is complete, `advance` takes the sequential verdicts of its comparisons
(`search.sequential`) and queues one more paired seed for each configuration whose comparison
is still open and for its reference, up to `max_seeds`, raising the study's target.

Both are derived from the trials alone, so an interrupted, resumed or joined study recomputes
them: nothing is kept anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import ablate, failpoints, ledger, stats
from search import study as studies
from search.sequential import Plan, Verdict, next_round, sequential_verdicts
from search.study import DESIGN_ATTR, StudyConfig

Queued = tuple[dict[str, Any], dict[str, Any]]  # (parameters, user attributes) of a trial


def _holds_seed(trial: FrozenTrial) -> bool:
    """Whether a trial stands for its seed of its configuration, queued or tried: not a
    duplicate, which reused another's result, and not refused as over the budget (no seed of
    it ever trains)."""
    return (
        ledger.DUPLICATE_OF not in trial.user_attrs
        and trial.user_attrs.get(ledger.FAILURE) != ledger.OVER_BUDGET
    )


def _trained(trial: FrozenTrial) -> bool:
    """Whether a trial trains or trained its configuration: its other seeds are worth
    training. One that could not be built, or failed with an error, is not repeated."""
    return trial.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.user_attrs.get(ledger.FAILURE) in (ledger.DIVERGED, ledger.INTERRUPTED)
    )


def _tried(trials: Sequence[FrozenTrial], study_seed: int) -> dict[str, set[int]]:
    """Per configuration (`ledger.configuration`), the seeds it has a trial of."""
    tried: dict[str, set[int]] = {}
    for t in trials:
        if _holds_seed(t):
            tried.setdefault(ledger.configuration(t), set()).add(ledger.seed_of(t, study_seed))
    return tried


def missing_seeds(trials: Sequence[FrozenTrial], settings: StudyConfig) -> list[Queued]:
    """The trials that give every configuration that trained all of the study's seeds."""
    wanted = ablate.seeds(settings.seed, settings.seeds)
    tried = _tried(trials, settings.seed)
    first: dict[str, FrozenTrial] = {}
    for t in trials:
        if _holds_seed(t) and _trained(t):
            first.setdefault(ledger.configuration(t), t)
    return [
        ledger.another_seed(t, seed)
        for key, t in first.items()
        for seed in wanted
        if seed not in tried[key]
    ]


def top_up(study: optuna.Study, settings: StudyConfig) -> int:
    """Queue the seeds the configurations of a `search run --seeds K` study lack; returns how
    many. A designed study queues its own."""
    if settings.design is not None or settings.seeds == 1:
        return 0
    queue = missing_seeds(study.get_trials(deepcopy=False), settings)
    for params, attrs in queue:
        study.enqueue_trial(params, user_attrs=attrs)
    return len(queue)


def plan(settings: StudyConfig) -> Plan | None:
    """The sequential plan of a design run with `--seeds auto`; None with fixed seeds."""
    if settings.max_seeds is None:
        return None
    return Plan(settings.seeds, settings.max_seeds, min_effect=settings.min_effect)


def accuracy_by_label(trials: Sequence[FrozenTrial]) -> dict[str, dict[int, float]]:
    """Configuration label -> seed -> validation accuracy, over a designed study's trained
    trials."""
    accuracy: dict[str, dict[int, float]] = {}
    for t in trials:
        label = t.user_attrs.get(ledger.CONFIG)
        if t.state == TrialState.COMPLETE and ledger.DUPLICATE_OF not in t.user_attrs and label:
            accuracy.setdefault(label, {})[t.user_attrs[ledger.SEED]] = t.user_attrs["accuracy"]
    return accuracy


def differences(
    comparisons: Sequence[ablate.Comparison], accuracy: Mapping[str, Mapping[int, float]]
) -> list[list[float]]:
    """Per comparison, its per-seed paired differences to its reference, over the seeds both
    trained, in seed order (the order they were trained in)."""
    return [
        stats.paired(accuracy.get(c.trained, {}), accuracy.get(c.reference_trained, {}))[1]
        for c in comparisons
    ]


@dataclass(frozen=True)
class Step:
    """What `advance` did after a complete round: the trials it queued, and why, in words."""

    queued: int
    message: str


def advance(study: optuna.Study, settings: StudyConfig) -> Step | None:
    """After a complete round of a design with sequential seeds (nothing queued, running, or
    interrupted and not queued again): one more paired seed for every configuration whose
    comparison is open below the maximum, and for its reference, queued with the study's
    target raised to match. None when the design has fixed seeds or its round is not
    complete."""
    seeds_plan = plan(settings)
    trials = study.get_trials(deepcopy=False)
    running = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
    if seeds_plan is None or running or ledger.not_rerun(trials):
        return None
    comparisons = ablate.comparisons(study.user_attrs[DESIGN_ATTR])
    verdicts = sequential_verdicts(differences(comparisons, accuracy_by_label(trials)), seeds_plan)
    grow = next_round(verdicts, seeds_plan).comparisons
    labels = [comparisons[i].reference_trained for i in grow]
    labels += [comparisons[i].trained for i in grow]  # references first, as at the start
    tried = _tried(trials, settings.seed)
    first = {}
    for t in trials:  # nothing is queued: every trial shows its parameters
        if _holds_seed(t):
            first.setdefault(ledger.configuration(t), t)
    queue = []
    for label in dict.fromkeys(labels):
        untried = [
            s
            for s in ablate.seeds(settings.seed, seeds_plan.max_seeds)
            if s not in tried.get(label, set())
        ]
        if untried and label in first:
            queue.append(ledger.another_seed(first[label], untried[0]))
    standing = _standing(verdicts, seeds_plan)
    if not queue:
        return Step(0, f"sequential seeds: {standing}")
    # The target first: a crash before the queue is written leaves a complete round, which
    # the next run recomputes to the same queue.
    studies.set_target(study, ledger.done(trials) + len(queue))
    failpoints.reached("round")
    for params, attrs in queue:
        study.enqueue_trial(params, user_attrs=attrs)
    more = ", ".join(f"{a[ledger.CONFIG]} (seed {a[ledger.SEED]})" for _, a in queue)
    return Step(len(queue), f"sequential seeds: {standing}; one more paired seed for {more}")


def _standing(verdicts: Sequence[Verdict], seeds_plan: Plan) -> str:
    resolved = sum(v.resolved for v in verdicts)
    at_max = sum(not v.resolved and v.n >= seeds_plan.max_seeds for v in verdicts)
    text = f"{resolved} of {len(verdicts)} comparisons resolved"
    return text + (f", {at_max} open at the maximum of {seeds_plan.max_seeds} seeds" * bool(at_max))
