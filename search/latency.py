"""Re-measures the latency of finished trials one at a time, alone on the machine.

Trials that run side by side share caches, memory bandwidth and, packed on one GPU, the GPU
itself: on an H100, four trials sharing it measured 0.43-2.0 ms for nets of the same size. So
the latency each trial measured is disturbed by its neighbours, and the finalists are timed
again here, sequentially, on the device and with the thread count their trial had. Finished
Optuna trials cannot be updated, so the figures live in the study's `latency_ms_alone`
attribute, keyed by trial number, each with how it was measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from search import ledger, weights
from search.provenance import device_name
from search.study import StudyConfig
from trainer.data import Splits
from trainer.measure import WARMUP, measure_latency
from trainer.train import channels_last_pays

ATTR = "latency_ms_alone"
ALONE_RUNS = 200  # timed batch-1 calls: four times a trial's, since only finalists pay it


def alone_ms(record: dict[str, Any] | float | None) -> float | None:
    """The median of a stored record (studies of earlier versions stored the bare float)."""
    return record["median_ms"] if isinstance(record, dict) else record


def remeasure(
    study: optuna.Study,
    settings: StudyConfig,
    splits: Splits,
    trials: Iterable[FrozenTrial],
    *,
    again: bool = False,
) -> tuple[dict[str, Any], list[int]]:
    """Time each of `trials` alone (those timed before only when `again`), store the records
    in the study; returns all records so far and the trials that could not be timed here
    (trained on a GPU this process does not have)."""
    alone: dict[str, Any] = dict(study.user_attrs.get(ATTR, {}))
    threads = torch.get_num_threads()
    skipped = []
    for trial in trials:
        if (
            trial.state != optuna.trial.TrialState.COMPLETE
            or ledger.DUPLICATE_OF in trial.user_attrs  # its original is the one trained
            or (str(trial.number) in alone and not again)
        ):
            continue
        device = torch.device(trial.user_attrs.get(ledger.DEVICE, "cpu"))
        if device.type == "cuda" and not torch.cuda.is_available():
            skipped.append(trial.number)
            continue
        model = weights.network(trial, settings, splits)
        trial_threads = trial.user_attrs.get(ledger.THREADS, threads)
        torch.set_num_threads(trial_threads)
        channels_last = channels_last_pays(model.arch, device, trial_threads)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        latency = measure_latency(
            weights.as_deployed(model, trial, settings),
            splits.image_shape,
            warmup=WARMUP,
            runs=ALONE_RUNS,
            channels_last=channels_last,
        )
        alone[str(trial.number)] = {
            "median_ms": latency.median_ms,
            "iqr_ms": latency.iqr_ms,
            "device": device_name(device),
            "threads": trial_threads,
            "warmup": WARMUP,
            "runs": ALONE_RUNS,
        }
    torch.set_num_threads(threads)
    study.set_user_attr(ATTR, alone)
    return alone, skipped
