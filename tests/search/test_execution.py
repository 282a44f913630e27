"""A study's execution settings (`search.execution`): recorded at its first run, kept by
every later one (threads per trial and device never change, `--parallel` only says how many
at once, `--fuse` how many train as one group), refused overrides, and studies stored before
the settings were recorded; on a real study in SQLite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search import execution, ledger
from search import study as studies
from search.errors import UsageError
from search.execution import Execution
from search.storage import open_storage
from search.study import StudyConfig
from spaces import load
from trainer.group import AUTO_MEMBERS


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    space = load("quickstart")
    config = StudyConfig(space.source, 6, 0, None, 1, str(tmp_path / "w"))
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    return studies.create_or_load(storage, "x", space, config)


def test_a_first_run_shares_the_cores_out_and_is_recorded_once(study: optuna.Study) -> None:
    first = execution.settle(study, 2, None, cpus=8, fuse="off")
    assert first == Execution(parallel=2, threads=4, device="cpu", gpus_per_trial=0.0)
    assert execution.settle(study, None, None, cpus=8).parallel == 1  # the default
    assert execution.settle(study, 4, 0.25, cpus=8, fuse="3") == Execution(4, 1, "cuda", 0.25, 3)
    execution.record(study, first)
    execution.record(study, Execution(1, 8, "cpu", 0.0))  # a later run records nothing
    assert study.user_attrs[execution.ATTR] == {
        "parallel": 2,
        "threads": 4,
        "device": "cpu",
        "gpus_per_trial": 0.0,
        "members": 1,
    }


def test_fuse_auto_takes_what_pays_on_the_device_and_a_later_run_may_change_it(
    study: optuna.Study,
) -> None:
    """`--fuse` is like `--parallel`: the first run's is kept unless given again."""
    assert execution.settle(study, 1, None, cpus=2).members == AUTO_MEMBERS["cpu"]
    assert execution.settle(study, 1, 1.0, cpus=2).members == AUTO_MEMBERS["cuda"]
    assert execution.settle(study, 1, 1.0, cpus=2, fuse="auto").members == AUTO_MEMBERS["cuda"]
    execution.record(study, execution.settle(study, 2, None, cpus=2, fuse="3"))
    assert execution.settle(study, None, None, cpus=2) == Execution(2, 1, "cpu", 0.0, 3)
    assert execution.settle(study, None, None, cpus=2, fuse="off").members == 1
    assert execution.settle(study, None, None, cpus=2, fuse="8").members == 8
    assert Execution(2, 1, "cpu", 0.0, 3).describe() == (
        "2 at once, fused in groups of up to 3, 1 thread each on cpu"
    )
    for bad in ("0", "-1", "on", "3.5", str(execution.MAX_MEMBERS + 1)):
        with pytest.raises(ValueError, match="expected auto, off or a number"):
            execution.parse_fuse(bad)


def test_later_runs_keep_threads_and_device_and_may_change_only_how_many_at_once(
    study: optuna.Study,
) -> None:
    execution.record(study, Execution(2, 1, "cpu", 0.0))
    assert execution.settle(study, None, None, cpus=2) == Execution(2, 1, "cpu", 0.0)
    assert execution.settle(study, None, None, cpus=64) == Execution(2, 1, "cpu", 0.0)
    # --parallel 1 on the same machine no longer hands its trial both cores.
    assert execution.settle(study, 1, None, cpus=2) == Execution(1, 1, "cpu", 0.0)
    assert execution.settle(study, 16, 0.0, cpus=64) == Execution(16, 1, "cpu", 0.0)


def test_an_override_that_moves_the_trials_to_another_device_is_refused(
    study: optuna.Study,
) -> None:
    execution.record(study, Execution(2, 1, "cpu", 0.0))
    with pytest.raises(UsageError) as refused:
        execution.settle(study, None, 0.5, cpus=2)
    message = str(refused.value)
    assert message == (
        "study 'x' ran its trials 2 at once, 1 thread each on cpu; --gpus-per-trial 0.5 "
        "would train the rest on cuda and mix two devices' timings: leave --gpus-per-trial "
        "out, or start a new study (--study NEW)"
    )
    assert len(message) < 300


def test_a_gpu_study_may_change_its_fraction_not_leave_the_gpu(study: optuna.Study) -> None:
    execution.record(study, Execution(4, 1, "cuda", 0.25))
    assert execution.settle(study, 8, 0.125, cpus=16) == Execution(8, 1, "cuda", 0.125)
    assert execution.settle(study, None, None, cpus=16) == Execution(4, 1, "cuda", 0.25)
    with pytest.raises(UsageError, match="would train the rest on cpu"):
        execution.settle(study, None, 0.0, cpus=16)


def test_threads_a_machine_cannot_give_one_trial_are_refused(study: optuna.Study) -> None:
    execution.record(study, Execution(2, 8, "cpu", 0.0))
    with pytest.raises(UsageError, match="has 2 CPU\\(s\\), fewer than one trial's threads"):
        execution.settle(study, None, None, cpus=2)
    assert execution.settle(study, 1, None, cpus=8) == Execution(1, 8, "cpu", 0.0)


def trained(study: optuna.Study, threads: int, device: str = "cpu") -> None:
    trial = study.ask()
    trial.set_user_attr(ledger.THREADS, threads)
    trial.set_user_attr(ledger.DEVICE, device)
    study.tell(trial, [0.9, 1000, 0.3])


def test_a_study_stored_before_settings_were_recorded_keeps_its_trials_threads(
    study: optuna.Study,
) -> None:
    trained(study, 1)
    trained(study, 1)
    assert execution.ATTR not in study.user_attrs
    # A bare resume on 2 cores: 2 trials of 1 thread, as its trials ran, not 1 of 2.
    assert execution.settle(study, None, None, cpus=2) == Execution(2, 1, "cpu", 0.0)
    assert execution.settle(study, 1, None, cpus=2) == Execution(1, 1, "cpu", 0.0)
    trained(study, 2)  # already mixed: nothing to keep, the first run's rules apply
    assert execution.settle(study, None, None, cpus=2) == Execution(
        1, 2, "cpu", 0.0, AUTO_MEMBERS["cpu"]
    )
