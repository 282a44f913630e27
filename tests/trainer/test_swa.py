"""SWA: the averaged weights, the recomputed BatchNorm statistics, the schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.techniques.swa import SWA


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)
    )


def clean_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 1, 6, 6, generator=g) + 2, torch.zeros(4)) for _ in range(3)]


def averaged_after_three_snapshots() -> tuple[SWA, nn.Module, list[list[torch.Tensor]]]:
    swa, model = SWA(), tiny_model()
    snapshots = []
    for i in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(i + 1))
        snapshots.append([p.detach().clone() for p in model.parameters()])
        swa.after_epoch(model)
    return swa, model, snapshots


def test_averaged_weights_are_the_mean_of_the_snapshots() -> None:
    swa, model, snapshots = averaged_after_three_snapshots()
    averaged = swa.finalize(model, clean_batches)
    for i, p in enumerate(averaged.parameters()):
        torch.testing.assert_close(p.detach(), torch.stack([s[i] for s in snapshots]).mean(0))
    assert averaged.state_dict().keys() == model.state_dict().keys()


def test_batchnorm_statistics_are_recomputed_on_the_clean_batches() -> None:
    swa, model, _ = averaged_after_three_snapshots()
    assert swa.averaged is not None
    stale = swa.averaged.module[1].running_mean.clone()
    averaged = swa.finalize(model, clean_batches)
    bn = averaged[1]
    # By hand: the equal-weight mean over batches of each batch's statistics.
    with torch.no_grad():
        feats = [averaged[0](x) for x, _ in clean_batches()]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert not torch.allclose(bn.running_mean, stale)
    assert bn.momentum == 0.1  # restored after recomputation


def test_finalize_before_any_snapshot_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before any averaged epoch"):
        SWA().finalize(tiny_model(), clean_batches)


@pytest.mark.parametrize(
    ("start", "epochs", "first"), [(0.75, 4, 3), (0.75, 10, 7), (0.95, 2, 1), (0.5, 1, 0)]
)
def test_averaging_starts_at_floor_of_start_times_epochs_with_one_epoch_left(
    start: float, epochs: int, first: int
) -> None:
    assert SWA(start=start).averaging_start(epochs) == first


def test_swa_lr_is_reached_after_a_tenth_of_the_steps_then_held() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = SWA(lr=0.01).averaging_scheduler(optimizer, 50)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] > lrs[2] > lrs[4] > 0.01
    assert lrs[5:] == pytest.approx([0.01] * 45)
