"""SAM against a hand computation on a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.techniques.base import StepMember
from trainer.techniques.sam import SAM, Ascent, sam_perturbation, sam_step


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, generator=g), F.one_hot(torch.arange(8) % 2, 2).float()


def forward_backward(model: nn.Module, x: torch.Tensor, targets: torch.Tensor):
    """The closure a SAM step calls for each pass: the loss, differentiated."""

    def run() -> torch.Tensor:
        loss = F.cross_entropy(model(x), targets)
        loss.backward()
        return loss.detach()

    return run


def gradients_at(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(x), targets).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("adaptive", [False, True])
def test_perturbation_formula(adaptive: bool) -> None:
    model, (x, targets) = tiny_model(), batch()
    grads = gradients_at(model, x, targets)
    params = list(model.parameters())
    e = sam_perturbation(params, 0.3, adaptive)
    flat = torch.cat([t.flatten() for t in e])
    g, w = (
        torch.cat([t.flatten() for t in grads]),
        torch.cat([p.detach().flatten() for p in params]),
    )
    if adaptive:  # e = rho * w^2 g / ||w g||, i.e. ||e / |w| || = rho where w != 0
        torch.testing.assert_close(flat, 0.3 * w * w * g / (w * g).norm())
        nonzero = w != 0  # BatchNorm shifts start at 0 and are not perturbed
        assert (flat[nonzero] / w[nonzero].abs()).norm().item() == pytest.approx(0.3)
    else:
        torch.testing.assert_close(flat, 0.3 * g / g.norm())
        assert flat.norm().item() == pytest.approx(0.3)


@pytest.mark.parametrize("adaptive", [False, True])
def test_step_equals_sgd_from_w_with_the_gradient_at_w_plus_e(adaptive: bool) -> None:
    model, (x, targets) = tiny_model(), batch()
    lr, rho = 0.1, 0.5
    w = [p.detach().clone() for p in model.parameters()]

    # Hand computation on a copy: g at w, e by formula, gradient at w + e.
    reference = copy.deepcopy(model)
    g = gradients_at(reference, x, targets)
    g_norm = torch.cat(
        [(wi.abs() * gi if adaptive else gi).flatten() for wi, gi in zip(w, g, strict=True)]
    ).norm()
    with torch.no_grad():
        for p, wi, gi in zip(reference.parameters(), w, g, strict=True):
            p.add_(rho * (wi * wi * gi if adaptive else gi) / g_norm)
    g_sharp = gradients_at(reference, x, targets)

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss = sam_step([Ascent(model, optimizer, rho, adaptive)], forward_backward(model, x, targets))
    for p, wi, gi in zip(model.parameters(), w, g_sharp, strict=True):
        torch.testing.assert_close(p.detach(), wi - lr * gi)
    torch.testing.assert_close(loss, F.cross_entropy(copy.deepcopy(tiny_model())(x), targets))
    assert not loss.requires_grad


def test_second_pass_leaves_batchnorm_statistics_alone() -> None:
    model, (x, targets) = tiny_model(), batch()
    one_pass = copy.deepcopy(model)
    one_pass(x)  # the first pass's update is the only one expected
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sam_step([Ascent(model, optimizer, 0.05, False)], forward_backward(model, x, targets))
    for name, buffer in one_pass.named_buffers():
        torch.testing.assert_close(model.get_buffer(name), buffer)
    assert model[1].num_batches_tracked.item() == 1


def test_both_passes_see_the_same_batch() -> None:
    model, (x, targets) = tiny_model(), batch()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    technique = SAM(rho=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    technique.step([StepMember(technique, model, optimizer)], forward_backward(model, x, targets))
    assert len(seen) == 2 and seen[0] is seen[1] is x
