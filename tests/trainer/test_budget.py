"""Budget matching: counts on the meta device, scaling into the 2% window, refusing what
cannot fit, and the `reject` policy never letting an over-budget configuration through."""

from __future__ import annotations

import pytest
import torch

from trainer.budget import BudgetError, fit_to_budget, params_of, resolve_arch
from trainer.models.net import Net
from trainer.spec import ArchSpec, StageSpec, TrialSpec

ARCH = ArchSpec(stages=(StageSpec(8), StageSpec(12), StageSpec(16)), stem_channels=4)
MNIST = ((1, 28, 28), 10)


def test_meta_count_equals_the_allocated_model() -> None:
    for arch in (ARCH, ArchSpec(stages=ARCH.stages, head="gap", separable_from=1, se_ratio=0.25)):
        real = sum(p.numel() for p in Net(arch, *MNIST).parameters())
        assert params_of(arch, *MNIST) == real


@pytest.mark.parametrize("budget", [800, 1500, 5000, 20000])
def test_scaling_lands_within_two_percent_below_the_budget(budget: int) -> None:
    fit = fit_to_budget(ARCH, *MNIST, budget)
    assert budget * 0.98 <= fit.params <= budget
    assert fit.params == params_of(fit.arch, *MNIST)


def test_a_budget_below_the_smallest_network_is_refused() -> None:
    with pytest.raises(BudgetError, match="over the budget of 50"):
        fit_to_budget(ARCH, *MNIST, 50)


def test_reject_policy_refuses_over_budget_and_keeps_the_rest_unscaled() -> None:
    size = params_of(ARCH, *MNIST)
    spec = TrialSpec(arch=ARCH, budget=size - 1, budget_policy="reject")
    with pytest.raises(BudgetError, match=f"{size:,} parameters, over the budget of {size - 1:,}"):
        resolve_arch(spec, *MNIST)
    fit = resolve_arch(TrialSpec(arch=ARCH, budget=size, budget_policy="reject"), *MNIST)
    assert fit.arch == ARCH and fit.params == size


def test_architecture_techniques_apply_before_the_budget() -> None:
    spec = TrialSpec(arch=ARCH, techniques={"se": {"ratio": 0.5}, "gap": {}}, budget=1500)
    fit = resolve_arch(spec, *MNIST)
    assert fit.arch.se_ratio == 0.5 and fit.arch.head == "gap"
    model = Net(fit.arch, *MNIST)
    assert sum(p.numel() for p in model.parameters()) == fit.params
    assert model(torch.randn(2, *MNIST[0])).shape == (2, 10)
