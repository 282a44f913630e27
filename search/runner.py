"""Runs a study's trials in parallel with Ray Tune. The only module that imports Ray.

Optuna decides what to try and keeps the record; Ray Tune decides where and when each
trial runs. `StudySearcher` is the bridge: Tune asks it for configurations, it asks the
Optuna study, and it tells the study every outcome as soon as Tune reports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.search import Searcher

from search import study as studies
from search.errors import UsageError
from search.study import StudyConfig
from spaces import Space
from trainer.budget import BudgetError, resolve_arch
from trainer.data import Splits
from trainer.train import Diverged, train

TRIAL_KEY = "optuna_trial"  # the Optuna trial number, beside the flat parameters
SEED_KEY = "optuna_seed"  # the trial's training seed (its `seed` user attribute)
MAX_REJECTIONS = 200  # consecutive over-budget proposals before the space is declared unusable


def run_trial(
    config: dict[str, Any], *, study_config: StudyConfig, splits: Splits, study_name: str
) -> None:
    """One trial, in a Ray worker: rebuild the spec from the flat parameters, train, report."""
    resources = tune.get_context().get_trial_resources().required_resources
    threads = max(1, int(resources.get("CPU", 1)))
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    number = config[TRIAL_KEY]
    params = {k: v for k, v in config.items() if k not in (TRIAL_KEY, SEED_KEY)}
    spec = study_config.space().replay(params, seed=config[SEED_KEY])
    try:
        result = train(spec, splits, device=device, threads=threads)
    except Diverged as err:
        tune.report({"failure": studies.DIVERGED, "reason": str(err)})
        return
    except Exception as err:  # any bug or resource error fails this trial, not the study
        last = traceback.format_exc().strip().splitlines()[-3:]
        tune.report({"failure": studies.ERROR, "reason": f"{err!r} | {' | '.join(last)}"})
        return
    weights = Path(study_config.weights_dir) / study_name / f"trial_{number}.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    partial = weights.with_suffix(".tmp")
    torch.save(result.model.state_dict(), partial)
    os.replace(partial, weights)  # atomic: a crash never leaves half a weights file
    tune.report({**result.metrics(), "failure": "", "threads": threads, "device": device})


class StudySearcher(Searcher):
    """A Ray Tune searcher that proposes from, and records into, an Optuna study."""

    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        config: StudyConfig,
        in_shape: tuple[int, int, int],
        num_classes: int,
        on_update: Callable[[str], None],
    ):
        super().__init__()  # no Tune metric: failed trials report none, the study judges
        self.study, self.space, self.config = study, space, config
        self.in_shape, self.num_classes = in_shape, num_classes
        self.on_update = on_update
        self.live: dict[str, optuna.Trial] = {}
        self.driver = studies.driver_id()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        done, running = studies.progress(self.study)
        designed_and_exhausted = self.config.design is not None and not self.study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,)
        )
        if done + running >= self.config.trials or designed_and_exhausted:
            # A designed study trains its queued trials and nothing the sampler proposes.
            return Searcher.FINISHED if not self.live else None
        for _ in range(MAX_REJECTIONS):
            trial = self.study.ask()
            trial.set_user_attr("driver", self.driver)
            seed = trial.user_attrs.get("seed")
            if seed is None:  # sampled, or queued without one: the study's seed
                seed = self.config.seed
                trial.set_user_attr("seed", seed)
            spec = self.space.suggest(trial, seed=seed)
            try:
                fit = resolve_arch(spec, self.in_shape, self.num_classes)
            except BudgetError as err:  # never trained: recorded, and not counted
                studies.fail(self.study, trial.number, studies.OVER_BUDGET, str(err))
                self.on_update(f"trial {trial.number} rejected: {err}")
                continue
            trial.set_user_attr("planned_params", fit.params)
            self.live[trial_id] = trial
            return {**trial.params, TRIAL_KEY: trial.number, SEED_KEY: seed}
        raise RuntimeError(
            f"{MAX_REJECTIONS} consecutive configurations were over the parameter budget; "
            "raise budget.params or use budget.policy: scale"
        )

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        if error:
            studies.fail(self.study, trial.number, studies.ERROR, "the trial's Ray worker failed")
        elif result is None or "failure" not in result:
            studies.fail(
                self.study, trial.number, studies.INTERRUPTED, "stopped before it finished"
            )
        elif result["failure"]:
            studies.fail(self.study, trial.number, result["failure"], result["reason"])
        else:
            for key in (
                "flops",
                "latency_iqr_ms",
                "train_seconds",
                "images_per_second",
                "final_loss",
                "threads",
                "device",
            ):
                trial.set_user_attr(key, result[key])
            self.study.tell(trial, [result[o] for o in self.space.objectives])
        self.on_update(describe(self.study.trials[trial.number], self.space.objectives))

    def interrupted(self) -> int:
        """Record every trial still running as interrupted; returns how many."""
        for trial in self.live.values():
            studies.fail(
                self.study, trial.number, studies.INTERRUPTED, "stopped before it finished"
            )
        count, self.live = len(self.live), {}
        return count


def describe(trial: optuna.trial.FrozenTrial, objectives: tuple[str, ...]) -> str:
    """One progress line for a finished trial, whatever objectives the space declares."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        values = ", ".join(f"{o} {v:.4g}" for o, v in zip(objectives, trial.values, strict=True))
        return f"trial {trial.number} done: {values}"
    return f"trial {trial.number} {trial.state.name}: {trial.user_attrs.get('reason', '')}"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast: Ray itself retries an unreachable head for minutes before giving up."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    with socket.create_connection((host, int(port)), timeout=timeout):
        pass


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start Ray on this machine with all its cores."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if ray.is_initialized():
        return
    try:
        if address not in (None, "auto", "local"):
            _check_reachable(address.removeprefix("ray://"))
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=True,
        )
    except (OSError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"cannot reach the Ray cluster at {address!r}: {reason}. Accepted: the address "
            "`ray start --head` printed (host:port), 'auto' for a cluster on this machine, "
            "or no --address to start Ray here"
        ) from None


def run_study(
    study: optuna.Study,
    space: Space,
    config: StudyConfig,
    splits: Splits,
    *,
    parallel: int,
    gpus_per_trial: float,
    address: str | None,
    runs_dir: Path,
    on_update: Callable[[str], None],
) -> int:
    """Run trials until the study reaches its target; returns how many were interrupted."""
    start_ray(address)
    cpus = ray.cluster_resources().get("CPU", 1)
    cpus_per_trial = max(1, int(cpus // parallel)) if gpus_per_trial == 0 else 1
    searcher = StudySearcher(
        study, space, config, splits.image_shape, splits.num_classes, on_update
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, study_config=config, splits=splits, study_name=study.study_name
        ),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=-1, max_concurrent_trials=parallel
        ),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((runs_dir / "ray").resolve()),
            verbose=0,
        ),
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: record what was running, below
        tuner.fit()
    return searcher.interrupted()
