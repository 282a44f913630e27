"""A run of a study by this driver, from the command line's side: its data read, Ray started
on loopback unless a cluster is named, its execution settings settled (`search.execution`),
the orphans of earlier runs failed and queued again, the trials run to the target with their
progress shown (`search.display`), the Pareto front re-timed alone and printed.
`search.runner`, the one module that imports Ray, is imported only when trials are about to
run, so commands that run none never pay for Ray.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import optuna

from search import display, export, failpoints, latency, ledger, provenance
from search import execution as executions
from search import study as studies
from search.execution import Execution
from search.study import StudyConfig
from spaces import Space
from trainer.data import DataError, Splits, load_dataset, make_splits

RUNS = Path("runs")  # under the working directory: weights, reports, Ray's trial folders

# Ray binds its servers to the machine's network address unless it believes it runs alone on
# a laptop; this flag, read when Ray is imported, keeps a Ray started here on loopback. Not
# for --address: a driver on a cluster must be reachable from the other nodes.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def load_splits(space: Space, data_dir: str | None, seed: int, download: bool = False) -> Splits:
    """The space's data set, split with the study's seed; a bad data set is one DataError."""
    try:
        data = load_dataset(
            space.data.dataset, data_dir, resize=space.data.resize, download=download
        )
    except DataError as err:
        raise DataError(f"data.dataset = {space.data.dataset[:60]!r}: {err}") from None
    failpoints.reached("data")
    return make_splits(data, val_fraction=space.data.val_fraction, seed=seed)


def start_ray(address: str | None) -> None:
    """Start Ray here on loopback, or join the cluster at `address`."""
    if address is None and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    from search import runner  # Ray is imported only when trials are about to run

    runner.start_ray(address)


def stop_ray() -> None:
    """Leave no Ray process behind, if this process imported Ray at all."""
    if "search.runner" in sys.modules:
        sys.modules["search.runner"].stop_ray()


def execution(
    study: optuna.Study,
    parallel: int | None,
    gpus_per_trial: float | None,
    fuse: str | None = None,
) -> Execution:
    """How this run runs the study's trials: as recorded at its first run, `parallel` and
    `gpus_per_trial` (None: not given) changing only how many at once, `fuse` how many train
    as one group. Ray must be started: the threads per trial must fit its cluster. A refused
    override raises UsageError."""
    from search import runner  # Ray is imported only when trials are about to run

    return executions.settle(study, parallel, gpus_per_trial, runner.cluster_cpus(), fuse)


def run(
    study: optuna.Study,
    settings: StudyConfig,
    splits: Splits,
    plan: Execution,
    *,
    address: str | None,
    strict_front: bool = False,
) -> int:
    """Run the study to its target as `plan` says, show its progress, print the noise-aware
    Pareto front (Optuna's strict one with `strict_front`); returns the exit status (130
    when interrupted). A design with sequential seeds
    runs round after round, each queued when the one before is complete (`search.seeds`)."""
    # Ray, and scipy for the seeds and the front, only when trials are about to run
    from search import configurations, runner, seeds

    space = settings.space()
    provenance.record(study, splits)
    executions.record(study, plan)
    orphans = ledger.fail_orphans(study, settings.grace_period)
    if orphans:
        print(f"{orphans} trial(s) of an earlier, ended run recorded as interrupted")
    requeued = ledger.requeue_interrupted(study)
    if requeued:
        print(f"{requeued} interrupted trial(s) queued to train again with their parameters")
    done, _ = ledger.progress(study, settings.grace_period)
    print(
        f"study {study.study_name!r}: {space.name}, {done}/{settings.trials} trials done, on "
        f"{len(splits.y_train)} train / {len(splits.y_val)} validation images\n"
        f"trials: {plan.describe()}; every run of this study keeps its threads and device",
        flush=True,
    )
    while True:
        with display.board(study, settings) as board:
            interrupted = runner.run_study(
                study,
                space,
                settings,
                splits,
                execution=plan,
                address=address,
                runs_dir=RUNS,
                board=board,
            )
        step = None if interrupted else seeds.advance(study, settings)
        if step is not None:
            print(step.message, flush=True)
        if step is None or not step.queued:
            break
        settings = studies.load_config(study)  # the target the round raised
    failpoints.reached("pareto")
    _, untimed = latency.remeasure(
        study, settings, splits, configurations.on_either_front(study, space)
    )
    if untimed:
        print(f"not re-timed alone (trained on a GPU this machine lacks): trials {untimed}")
    if strict_front:
        print(f"\nOptuna's strict Pareto front of {study.study_name!r} (validation accuracy):")
        table = export.rows(study, settings, only_pareto=True, strict=True)
        print(export.summary(table, space.objectives))
    else:
        print(f"\nNoise-aware Pareto front of {study.study_name!r} (validation accuracy):")
        print(export.front_summary(study, settings))
    if interrupted:
        print(
            f"\ninterrupted: {interrupted} running trial(s) recorded as interrupted; "
            f"continue with: search resume {study.study_name}"
        )
        return 130
    return 0
