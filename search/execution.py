"""How a study's trials run: how many at once, with how many CPU threads each, on which
device, with what fraction of a GPU, and how many of them train together as one fused group.

Latency and throughput are measured inside each trial, on its device with its threads, and
a report takes medians over trials: a study whose trials ran with different thread counts
or on different devices would mix incomparable timings. So a study records these settings
at its first run (user attribute `execution`), and every later run of it (`search resume`,
`search run` or `search ablate` of its name, a second driver joining) keeps its threads per
trial and its device. `--parallel` and `--gpus-per-trial` given again change only how many
trials run at once (a bigger machine); one that would move the trials to another device is
refused.

`--fuse` (`auto`, `off` or K) lets queued trials that may share a network
(`trainer.group.RULE`) train as one fused group of up to K members in one Ray task; `auto`
takes what the benchmarks found to pay on the device (`trainer.group.AUTO_MEMBERS`). A
group is what runs "at once" and what `--gpus-per-trial` and the threads are given to. Like
`--parallel` it may change from one run to the next: latency is measured per member alone,
and a member's training time is its group's, as a trial's is shared with those beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import optuna
from optuna.trial import TrialState

from search import ledger
from search.errors import UsageError
from trainer.group import AUTO_MEMBERS

ATTR = "execution"
CPU, CUDA = "cpu", "cuda"
FUSE_AUTO, FUSE_OFF = "auto", "off"
MAX_MEMBERS = 256  # `--fuse K`: at most this many trials in one fused network


@dataclass(frozen=True)
class Execution:
    """What each run of a study gives its trials (a fused group's members share its part)."""

    parallel: int  # trials (fused groups) at once, at most
    threads: int  # CPU threads per trial or group (torch's thread count, Ray's CPUs)
    device: str  # CPU or CUDA
    gpus_per_trial: float  # per trial or group; 0 on the CPU
    members: int = 1  # trials per fused group at most; 1: each trial alone (studies before)

    def describe(self) -> str:
        """E.g. '2 at once, 1 thread each on cpu' or '2 at once, fused in groups of up to 3,
        1 thread each on cpu'."""
        fused = f", fused in groups of up to {self.members}" if self.members > 1 else ""
        threads = f"{self.threads} thread{'s' * (self.threads != 1)} each"
        gpu = f", {self.gpus_per_trial:g} GPU each" if self.device == CUDA else ""
        return f"{self.parallel} at once{fused}, {threads} on {self.device}{gpu}"


def device_of(gpus_per_trial: float) -> str:
    """The device a trial trains on: a GPU fraction puts it on CUDA."""
    return CUDA if gpus_per_trial > 0 else CPU


def members(fuse: str, device: str) -> int:
    """Trials per fused group for `--fuse`: 'off' 1, 'auto' as many as pay on `device`,
    else the number given (`parse_fuse` checked it)."""
    if fuse == FUSE_OFF:
        return 1
    if fuse == FUSE_AUTO:
        return AUTO_MEMBERS[device]
    return int(fuse)


def parse_fuse(text: str) -> str:
    """`--fuse`: 'auto', 'off' or a number of trials per group; ValueError otherwise."""
    if text in (FUSE_AUTO, FUSE_OFF) or (text.isdigit() and 1 <= int(text) <= MAX_MEMBERS):
        return text
    raise ValueError(
        f"{text[:40]!r}: expected {FUSE_AUTO}, {FUSE_OFF} or a number of trials per group in "
        f"[1, {MAX_MEMBERS}]"
    )


def first(parallel: int, gpus_per_trial: float, cpus: float, fuse: str = FUSE_AUTO) -> Execution:
    """A study's first run: on the CPU, the cluster's cores shared out among the trials
    (groups) that run at once; on a GPU, one thread each (the GPU does the work)."""
    threads = max(1, int(cpus // parallel)) if gpus_per_trial == 0 else 1
    device = device_of(gpus_per_trial)
    return Execution(parallel, threads, device, gpus_per_trial, members(fuse, device))


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
    study: optuna.Study,
    parallel: int | None,
    gpus_per_trial: float | None,
    cpus: float,
    fuse: str | None = None,
) -> Execution:
    """The settings this run uses: the recorded ones, with `--parallel` and
    `--gpus-per-trial` (None: not given) changing only how many trials run at once, and
    `--fuse` (None: not given, the recorded one, else auto) how many train as one group.

    Raises UsageError, touching nothing, for an override that would move the trials to
    another device, and for threads per trial that the `cpus` of this Ray cluster cannot
    give a single trial.
    """
    kept = recorded(study, cpus)
    if kept is None:
        return first(parallel or 1, gpus_per_trial or 0.0, cpus, fuse or FUSE_AUTO)
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
    fused = kept.members if fuse is None else members(fuse, kept.device)
    return Execution(parallel or kept.parallel, kept.threads, kept.device, gpus, fused)


def record(study: optuna.Study, execution: Execution) -> None:
    """Store the settings in the study, once: at its first run (or the first since this
    was recorded)."""
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, asdict(execution))
