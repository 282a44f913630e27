"""What a Ray worker does with the trials it is given: train them as one fused group
(`trainer.train.train_group`), save each one's weights, and say what became of each.

Nothing here imports Ray (`search.runner` calls it inside a Ray task, and the tests call it
directly). A Ray Tune trial's config is its members, each one's flat parameters with its
Optuna trial number and training seed under the keys named here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from search import ledger, weights
from search.study import StudyConfig
from trainer.data import Splits
from trainer.models.net import stage_channels
from trainer.spec import TrialSpec
from trainer.train import Diverged, Result, train_group

MEMBERS_KEY = "members"  # a Ray Tune trial's config: the list of its members
TRIAL_KEY = "optuna_trial"  # a member's Optuna trial number, beside its flat parameters
SEED_KEY = "optuna_seed"  # a member's training seed


class Stopped(Exception):
    """The driver stopped this member (successive halving pruned it): it leaves the group,
    which trains on without it."""


def train_trials(
    members: list[dict[str, Any]],
    settings: StudyConfig,
    splits: Splits,
    study_name: str,
    device: str,
    threads: int,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Rebuild each member's spec from its flat parameters, train the members as one fused
    group (telling `on_epoch(member, epoch, accuracy)` each one's validation accuracy), save
    each one's weights; returns what the searcher is told of each member, under its
    TRIAL_KEY: its measurements, or why it failed. A member the driver stopped is left out:
    the driver recorded it.

    Each epoch is checkpointed per member, and an earlier attempt's checkpoint of the same
    configuration is resumed from (alone or in any group); the searcher deletes it once the
    outcome is recorded."""
    numbers = [m[TRIAL_KEY] for m in members]
    params = [{k: v for k, v in m.items() if k not in (TRIAL_KEY, SEED_KEY)} for m in members]
    seeds = [m[SEED_KEY] for m in members]
    marks = [weights.stop_mark(settings, study_name, n) for n in numbers]
    specs: list[TrialSpec] = []
    try:
        specs = [settings.space().replay(p, seed=s) for p, s in zip(params, seeds, strict=True)]
        results = train_group(
            specs,
            splits,
            device=device,
            threads=threads,
            on_epoch=None if on_epoch is None else partial(_report, on_epoch, marks),
            checkpoints=[
                weights.checkpoint_path(settings, study_name, p, s)
                for p, s in zip(params, seeds, strict=True)
            ],
        )
    except Exception as err:  # any bug or resource error fails this group, not the study
        results = [err] * len(members)
    outcomes = []
    for i, (number, result) in enumerate(zip(numbers, results, strict=True)):
        if isinstance(result, Stopped):
            continue
        if isinstance(result, Result):
            weights.save(result.model, weights.weights_path(settings, study_name, number))
            outcome = {
                **result.metrics(),
                ledger.CHANNELS: "-".join(map(str, stage_channels(result.model.arch))),
                ledger.BUDGET: specs[i].budget,
                ledger.FAILURE: "",
                ledger.THREADS: threads,
                ledger.DEVICE: device,
            }
        elif isinstance(result, Diverged):  # this member alone: the others trained on
            outcome = {ledger.FAILURE: ledger.DIVERGED, ledger.REASON: str(result)}
        else:
            last = "".join(traceback.format_exception(result)).strip().splitlines()[-3:]
            outcome = {
                ledger.FAILURE: ledger.ERROR,
                ledger.REASON: f"{result!r} | {' | '.join(last)}",
            }
        outcomes.append({TRIAL_KEY: number, **outcome})
    return outcomes


def _report(
    on_epoch: Callable[[int, int, float], None],
    marks: list[Path],
    member: int,
    epoch: int,
    accuracy: float,
) -> None:
    """`on_epoch`, then the member leaves the group if the driver marked it stopped. Ray
    Tune's report returns once the driver has taken the epoch in, so a member stopped there
    is marked by now, and leaves before its next epoch costs anything."""
    on_epoch(member, epoch, accuracy)
    if marks[member].is_file():
        marks[member].unlink(missing_ok=True)
        raise Stopped(f"stopped after epoch {epoch}")
