"""How a study's trials run: how many at once, with how many CPU threads each, on which
device, with what fraction of a GPU.

Latency and throughput are measured inside each trial, on its device with its threads, and
a report takes medians over trials: a study whose trials ran with different thread counts
or on different devices would mix incomparable timings. So a study records these settings
at its first run (user attribute `execution`), and every later run of it (`search resume`,
`search run` or `search ablate` of its name, a second driver joining) keeps its threads per
trial and its device. `--parallel` and `--gpus-per-trial` given again change only how many
trials run at once (a bigger machine); one that would move the trials to another device is
refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import optuna
from optuna.trial import TrialState

from search import ledger
from search.errors import UsageError

ATTR = "execution"
CPU, CUDA = "cpu", "cuda"


@dataclass(frozen=True)
class Execution:
    """What each run of a study gives its trials."""

    parallel: int  # trials at once, at most
    threads: int  # CPU threads per trial (torch's thread count, Ray's CPUs)
    device: str  # CPU or CUDA
    gpus_per_trial: float  # 0 on the CPU

    def describe(self) -> str:
        """E.g. '2 at once, 1 thread each on cpu'."""
        threads = f"{self.threads} thread{'s' * (self.threads != 1)} each"
        gpu = f", {self.gpus_per_trial:g} GPU each" if self.device == CUDA else ""
        return f"{self.parallel} at once, {threads} on {self.device}{gpu}"


def device_of(gpus_per_trial: float) -> str:
    """The device a trial trains on: a GPU fraction puts it on CUDA."""
    return CUDA if gpus_per_trial > 0 else CPU


def first(parallel: int, gpus_per_trial: float, cpus: float) -> Execution:
    """A study's first run: on the CPU, the cluster's cores shared out among the trials
    that run at once; on a GPU, one thread each (the GPU does the work)."""
    threads = max(1, int(cpus // parallel)) if gpus_per_trial == 0 else 1
    return Execution(parallel, threads, device_of(gpus_per_trial), gpus_per_trial)


def recorded(study: optuna.Study, cpus: float) -> Execution | None:
    """The settings the study ran with: as recorded at its first run or, for a study stored
    before they were recorded, the threads and device every trained trial shares (then as
    many at once as fit, one GPU each). None for a study nothing has run in yet, or whose
    trials already differ."""
    stored = study.user_attrs.get(ATTR)
    if stored is not None:
        return Execution(**stored)
    ran = {
        (t.user_attrs[ledger.THREADS], t.user_attrs[ledger.DEVICE])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if ledger.THREADS in t.user_attrs and ledger.DEVICE in t.user_attrs
    }
    if len(ran) != 1:
        return None
    ((threads, device),) = ran
    threads = int(threads)
    if device == CPU:
        return Execution(max(1, int(cpus // threads)), threads, CPU, 0.0)
    return Execution(1, threads, device, 1.0)


def settle(
    study: optuna.Study, parallel: int | None, gpus_per_trial: float | None, cpus: float
) -> Execution:
    """The settings this run uses: the recorded ones, with `--parallel` and
    `--gpus-per-trial` (None: not given) changing only how many trials run at once.

    Raises UsageError, touching nothing, for an override that would move the trials to
    another device, and for threads per trial that the `cpus` of this Ray cluster cannot
    give a single trial.
    """
    kept = recorded(study, cpus)
    if kept is None:
        return first(parallel or 1, gpus_per_trial or 0.0, cpus)
    name = study.study_name
    gpus = kept.gpus_per_trial if gpus_per_trial is None else gpus_per_trial
    if device_of(gpus) != kept.device:
        raise UsageError(
            f"study {name!r} ran its trials {kept.describe()}; --gpus-per-trial {gpus:g} "
            f"would train the rest on {device_of(gpus)} and mix two devices' timings: leave "
            "--gpus-per-trial out, or start a new study (--study NEW)"
        )
    if kept.threads > cpus:
        raise UsageError(
            f"study {name!r} ran its trials {kept.describe()}; this Ray cluster has "
            f"{cpus:g} CPU(s), fewer than one trial's threads: continue it on a machine with "
            f"at least {kept.threads}, or start a new study (--study NEW)"
        )
    return Execution(parallel or kept.parallel, kept.threads, kept.device, gpus)


def record(study: optuna.Study, execution: Execution) -> None:
    """Store the settings in the study, once: at its first run (or the first since this
    was recorded)."""
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, asdict(execution))
