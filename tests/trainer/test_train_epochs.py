"""The trainer's per-epoch hook: what successive halving and the progress display read.

It reports each epoch's validation accuracy, changes nothing about the training it watches,
and ends training when it raises.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
import torch

from trainer.data import Splits, load_dataset, make_splits
from trainer.spec import ArchSpec, StageSpec, TrainSpec, TrialSpec
from trainer.train import train

SPEC = TrialSpec(
    arch=ArchSpec(stages=(StageSpec(8), StageSpec(12)), stem_channels=4),
    train=TrainSpec(epochs=3, batch_size=64, lr=0.05),
    budget=None,
    seed=0,
)


@cache
def splits() -> Splits:
    """Embedded 8x8 digits, 512 training images: a few seconds per run."""
    full = make_splits(load_dataset("digits"), val_fraction=0.2, seed=0)
    return replace(full, x_train=full.x_train[:512], y_train=full.y_train[:512])


class Stop(Exception):
    pass


def test_each_epoch_reports_its_validation_accuracy_and_training_is_unchanged() -> None:
    seen: list[tuple[int, float]] = []
    watched = train(SPEC, splits(), threads=1, latency_runs=2, on_epoch=lambda *a: seen.append(a))
    alone = train(SPEC, splits(), threads=1, latency_runs=2)

    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert all(0.0 <= accuracy <= 1.0 for _, accuracy in seen)
    # Without averaging, the last epoch's model is the one the trial is measured on.
    assert seen[-1][1] == watched.accuracy
    # Validating between epochs draws no random numbers and leaves the weights alone.
    assert watched.accuracy == alone.accuracy
    assert watched.final_loss == alone.final_loss
    for name, tensor in watched.model.state_dict().items():
        assert torch.equal(tensor, alone.model.state_dict()[name]), name


def test_an_epoch_report_that_raises_ends_training_there() -> None:
    seen: list[int] = []

    def stop_after_two(epoch: int, accuracy: float) -> None:
        seen.append(epoch)
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(SPEC, splits(), threads=1, latency_runs=2, on_epoch=stop_after_two)
    assert seen == [1, 2]
