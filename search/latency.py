"""Re-measures the latency of the Pareto trials one at a time, alone on the machine.

Trials that run side by side share caches and memory bandwidth, so the latency each one
measured is disturbed by its neighbours. The finalists are timed again here, sequentially,
with the thread count their trial had. Finished Optuna trials cannot be updated, so the
figures live in the study's `latency_ms_alone` attribute, keyed by trial number.
"""

from __future__ import annotations

import optuna
import torch

from search import study as studies
from search.study import StudyConfig
from trainer.budget import resolve_arch
from trainer.data import Splits
from trainer.measure import measure_latency
from trainer.models.net import Net
from trainer.train import channels_last_pays

ATTR = "latency_ms_alone"


def remeasure_pareto(study: optuna.Study, config: StudyConfig, splits: Splits) -> dict[str, float]:
    """Time every CPU-trained Pareto trial not timed alone yet; returns all figures so far."""
    alone: dict[str, float] = dict(study.user_attrs.get(ATTR, {}))
    space = config.space()
    threads = torch.get_num_threads()
    for trial in studies.pareto_front(study):
        if str(trial.number) in alone or trial.user_attrs.get("device") != "cpu":
            continue
        arch = resolve_arch(
            space.replay(trial.params, studies.seed_of(trial, config)),
            splits.image_shape,
            splits.num_classes,
        ).arch
        trial_threads = trial.user_attrs.get("threads", threads)
        torch.set_num_threads(trial_threads)
        channels_last = channels_last_pays(arch, torch.device("cpu"), trial_threads)
        model = Net(arch, splits.image_shape, splits.num_classes)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        alone[str(trial.number)] = measure_latency(
            model, splits.image_shape, runs=200, channels_last=channels_last
        ).median_ms
    torch.set_num_threads(threads)
    study.set_user_attr(ATTR, alone)
    return alone
