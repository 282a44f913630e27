"""Per-epoch checkpoints: an interrupted trial continues from its last epoch, bit for bit the
run that was never interrupted; a checkpoint that does not fit is ignored, never trusted;
and through the real runner, a trial whose driver is killed mid-trial resumes in its re-run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import tempfile
from dataclasses import replace
from functools import cache
from pathlib import Path

import optuna
import procs
import pytest
import torch
from conftest import run_search
from optuna.trial import TrialState

from search import export, ledger
from search import study as studies
from trainer.checkpoint import fingerprint
from trainer.data import Splits, load_dataset, make_splits
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.train import Result, train

# 512 digits in batches of 64: 8 steps per epoch; crops and flips draw from the generator.
TINY = TrialSpec(
    arch=ArchSpec(stages=(StageSpec(8), StageSpec(12)), stem_channels=4),
    train=TrainSpec(epochs=4, batch_size=64, lr=0.05, crop_padding=1, flip=True),
    budget=None,
    seed=3,
)
SWA = {"swa": {"start": 0.5, "lr": 0.01}}  # averaging from epoch 2 of 4
RECIPES = {
    "plain": {},
    "swa+mixup": {**SWA, "mixup": {"alpha": 0.4}},  # mixup draws from the generator too
    "one_cycle": {"one_cycle": {}},
    "one_cycle+swa": {"one_cycle": {}, **SWA},  # momentum reset at the averaging hand-off
    "ema+tta_flip": {"ema": {"decay": 0.99, "warmup": True}, "tta_flip": {}},  # its count too
}


class Interrupted(Exception):
    """Stands for a kill at the end of an epoch."""


@cache
def digits() -> Splits:
    splits = make_splits(load_dataset("digits", None), val_fraction=0.1, seed=0)
    return replace(splits, x_train=splits.x_train[:512], y_train=splits.y_train[:512])


def spec_of(recipe: str) -> TrialSpec:
    return replace(TINY, techniques=RECIPES[recipe])


def run(spec: TrialSpec, checkpoint: Path | None = None, stop_after: int | None = None) -> Result:
    def on_epoch(epoch: int, accuracy: float) -> None:
        if epoch == stop_after:
            raise Interrupted

    return train(
        spec,
        digits(),
        threads=1,
        latency_runs=2,
        on_epoch=on_epoch if stop_after else None,
        checkpoint=checkpoint,
    )


@cache
def straight(recipe: str) -> Result:
    """The run that was never interrupted, and never checkpointed."""
    return run(spec_of(recipe))


def assert_identical(resumed: Result, reference: Result) -> None:
    got, want = resumed.model.state_dict(), reference.model.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert resumed.accuracy == reference.accuracy
    assert resumed.final_loss == reference.final_loss


@pytest.mark.parametrize(
    ("recipe", "stop_after"),
    [
        ("plain", 1),
        ("plain", 4),  # killed after the last epoch (while measuring): nothing left to train
        ("swa+mixup", 1),  # before averaging
        ("swa+mixup", 2),  # at the hand-off: the next epoch starts the averaging phase
        ("swa+mixup", 3),  # inside averaging: the averaged model and its count come back
        ("one_cycle", 2),
        ("one_cycle+swa", 3),
        ("ema+tta_flip", 2),  # the average and its update count come back
    ],
)
def test_a_resumed_trial_is_bit_for_bit_the_uninterrupted_one(
    recipe: str, stop_after: int, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "ckpt" / "trial.pt"
    with pytest.raises(Interrupted):
        run(spec_of(recipe), checkpoint, stop_after=stop_after)
    assert checkpoint.is_file()
    resumed = run(spec_of(recipe), checkpoint)
    assert resumed.resumed_from_epoch == stop_after
    assert_identical(resumed, straight(recipe))
    assert straight(recipe).resumed_from_epoch == 0
    assert resumed.train_seconds > 0
    assert os.listdir(checkpoint.parent) == ["trial.pt"]  # no temporary file left behind


def test_train_seconds_cover_the_epochs_of_every_attempt(tmp_path: Path) -> None:
    checkpoint = tmp_path / "trial.pt"
    with pytest.raises(Interrupted):
        run(TINY, checkpoint, stop_after=2)
    first = torch.load(checkpoint, weights_only=True)["train_seconds"]
    assert first > 0
    assert run(TINY, checkpoint).train_seconds > first


def test_a_checkpoint_holds_the_keys_files_on_disk_have(tmp_path: Path) -> None:
    """Files written before are resumed as they are: changing what a checkpoint holds means
    raising `trainer.checkpoint.FORMAT`, and this list."""
    checkpoint = tmp_path / "trial.pt"
    with pytest.raises(Interrupted):
        run(spec_of("swa+mixup"), checkpoint, stop_after=3)
    saved = torch.load(checkpoint, weights_only=True)
    assert sorted(saved) == [
        "epoch",
        "final_loss",
        "fingerprint",
        "generator",
        "model",
        "optimizer",
        "rng",
        "scheduler",
        "techniques",
        "train_seconds",
    ]
    assert list(saved["techniques"]) == ["swa"] and list(saved["techniques"]["swa"]) == ["averaged"]


def ignored(
    checkpoint: Path, spec: TrialSpec, caplog: pytest.LogCaptureFixture, reason: str
) -> None:
    """Training with `checkpoint` starts from scratch, saying why, and ends as a straight run."""
    with caplog.at_level(logging.WARNING, logger="trainer.checkpoint"):
        result = run(spec, checkpoint)
    assert result.resumed_from_epoch == 0
    assert_identical(result, run(spec))
    messages = [r.getMessage() for r in caplog.records]
    assert any("ignored, training from scratch" in m and reason in m for m in messages), messages


def test_a_corrupt_checkpoint_is_ignored_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "trial.pt"
    with pytest.raises(Interrupted):
        run(TINY, checkpoint, stop_after=1)
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[: len(whole) // 2])  # truncated
    ignored(checkpoint, TINY, caplog, "unreadable")
    checkpoint.write_bytes(b"not a checkpoint")
    ignored(checkpoint, TINY, caplog, "unreadable")


def test_a_checkpoint_holding_code_is_never_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "trial.pt"
    torch.save({"epoch": 3, "hook": print}, checkpoint)  # weights_only refuses functions
    ignored(checkpoint, TINY, caplog, "unreadable")


def test_a_resumed_ema_recipe_with_warm_up_and_no_decay_on_norms(tmp_path: Path) -> None:
    spec = replace(
        spec_of("ema+tta_flip"),
        train=replace(TINY.train, warmup_fraction=0.25, no_wd_bn_bias=True),
    )
    checkpoint = tmp_path / "trial.pt"
    with pytest.raises(Interrupted):
        run(spec, checkpoint, stop_after=1)  # as the warm-up ends: its 8 steps of 32
    saved = torch.load(checkpoint, weights_only=True)
    assert sorted(saved["techniques"]["ema"]) == ["averaged", "updates"]
    assert saved["techniques"]["ema"]["updates"] == 8
    assert_identical(run(spec, checkpoint), run(spec))


def test_fingerprints_of_trials_without_the_new_recipe_fields_are_as_before() -> None:
    """A checkpoint written before `warmup_fraction` and `no_wd_bn_bias` existed still
    resumes: at their defaults they are not part of the fingerprint (this digest is the
    one the code before them computed for this trial)."""
    spec = replace(TINY, techniques=SWA)
    written = fingerprint(spec, steps_per_epoch=8, batch_size=64, device="cpu")
    digest = "f7173f18e0ec7daaed0af82984f88e9e83f1b1868fef3396a2309775b635d379"
    assert hashlib.sha256(written.encode()).hexdigest() == digest
    for changed in ({"warmup_fraction": 0.1}, {"no_wd_bn_bias": True}):
        other = replace(spec, train=replace(spec.train, **changed))
        assert fingerprint(other, steps_per_epoch=8, batch_size=64, device="cpu") != written


@pytest.mark.parametrize(
    "other",
    [
        replace(TINY, train=replace(TINY.train, epochs=3)),  # another epoch count
        replace(TINY, train=replace(TINY.train, lr=0.02)),
        replace(TINY, seed=4),
        replace(TINY, techniques=SWA),
        replace(TINY, train=replace(TINY.train, warmup_fraction=0.25)),
    ],
    ids=["epochs", "lr", "seed", "techniques", "warm-up"],
)
def test_a_checkpoint_of_another_spec_is_ignored_with_its_reason(
    other: TrialSpec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = tmp_path / "trial.pt"
    with pytest.raises(Interrupted):
        run(TINY, checkpoint, stop_after=1)
    ignored(checkpoint, other, caplog, "another trial spec")


# -- end to end: a driver killed mid-trial, then `search resume` ---------------------------


@pytest.mark.slow
def test_a_trial_killed_mid_trial_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    """The driver dies during the study's first trial, its baseline, after one epoch's
    checkpoint: `search resume` trains the baseline again from that epoch, reaches the target
    with nothing trained twice, and the export says which trial re-ran which."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    tag = procs.new_tag()
    env = {
        procs.TAG: tag,
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="rc", dir="/tmp"),  # short: Ray's socket paths
    }
    start = ["run", "quickstart", "--study", "c", "--storage", url, "--trials", "2"]
    start += ["--epochs", "2", "--parallel", "1"]

    def search(*args: str, failpoint: str = "") -> subprocess.CompletedProcess:
        return run_search(
            *args, cwd=tmp_path, env={**env, "SEARCH_FAILPOINT": failpoint}, timeout=600
        )

    try:
        killed = search(*start, failpoint="epoch")  # the driver dies on its first epoch report
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        checkpoints = tmp_path / "runs" / "weights" / "c" / "checkpoints"
        assert list(checkpoints.glob("*.pt")), "no checkpoint after the first epoch"
        killed_trials = optuna.load_study(study_name="c", storage=url).trials
        assert [t.state for t in killed_trials] == [TrialState.RUNNING]
        assert killed_trials[0].user_attrs["baseline"] is True

        resumed = search("resume", "c", "--storage", url, "--parallel", "1")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "1 interrupted trial(s) queued to train again" in resumed.stdout
    finally:
        procs.kill_tagged(tag)  # whatever Ray left, should the reaper have failed

    study = optuna.load_study(study_name="c", storage=url)
    interrupted, rerun = study.trials[0], study.trials[1]
    assert interrupted.user_attrs["failure"] == ledger.INTERRUPTED
    assert rerun.state == TrialState.COMPLETE and rerun.user_attrs["rerun_of"] == 0
    assert rerun.user_attrs["baseline"] is True and rerun.params == interrupted.params
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE]
    keys = {ledger.config_key(t.params, t.user_attrs["seed"]) for t in trained}
    assert len(trained) == len(keys) == 2  # the target, nothing trained twice
    assert rerun.user_attrs["resumed_from_epoch"] >= 1
    assert rerun.user_attrs["train_seconds"] > 0
    assert not list(checkpoints.glob("*")), "the recorded trial's checkpoint is still there"
    rows = export.rows(study, studies.load_config(study), only_pareto=False)
    reruns = [r["rerun_of"] for r in rows]  # then new proposals (some over the budget)
    assert reruns[:2] == [None, 0] and set(reruns[2:]) == {None}
    assert rows[1]["resumed_from_epoch"] == rerun.user_attrs["resumed_from_epoch"]
