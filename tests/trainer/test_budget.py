"""Budget matching: counts on the meta device, scaling into the 2% window, refusing what
cannot fit, and the `reject` policy never letting an over-budget configuration through."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from trainer.budget import BudgetError, corrections, fit_to_budget, params_of, resolve_arch
from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.net import Net
from trainer.models.residual import Residual
from trainer.spec import ArchSpec, StageSpec, TrialSpec

ARCH = ArchSpec(stages=(StageSpec(8), StageSpec(12), StageSpec(16)), stem_channels=4)
MNIST = ((1, 28, 28), 10)


# The block kinds and shapes a space can build: every one is counted and fitted exactly.
WIDE = ArchSpec(
    stages=(StageSpec(8, blocks=2, kernel=7), StageSpec(12, kernel=5), StageSpec(16, blocks=2)),
    stem_channels=4,
)
ARCHES = {
    "plain": ARCH,
    "separable-se-gap": replace(ARCH, head="gap", separable_from=1, se_ratio=0.25),
    "residual": replace(ARCH, residual=True),
    "residual-stride": replace(WIDE, residual=True, downsample="stride", separable_from=1),
    "bottleneck": replace(WIDE, separable_from=0, expansion=4, head="gap"),
    "bottleneck-residual": replace(WIDE, separable_from=1, expansion=2, residual=True),
    "late-blur-se": replace(WIDE, late_downsample=True, blur=3, se_ratio=0.25, expansion=3),
}


@pytest.mark.parametrize("arch", ARCHES.values(), ids=ARCHES.keys())
def test_meta_count_equals_the_allocated_model(arch: ArchSpec) -> None:
    real = sum(p.numel() for p in Net(arch, *MNIST).parameters())
    assert params_of(arch, *MNIST) == real


@pytest.mark.parametrize("arch", ARCHES.values(), ids=ARCHES.keys())
@pytest.mark.parametrize("budget", [800, 1500, 5000, 20000])
def test_scaling_lands_within_two_percent_below_the_budget(budget: int, arch: ArchSpec) -> None:
    fit = fit_to_budget(arch, *MNIST, budget)
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


def test_the_new_blocks_apply_before_the_budget() -> None:
    techniques = {"depthwise": {}, "inverted_bottleneck": {"expansion": 4}, "residual": {}}
    fit = resolve_arch(TrialSpec(arch=ARCH, techniques=techniques, budget=1500), *MNIST)
    assert (fit.arch.expansion, fit.arch.residual, fit.arch.separable_from) == (4, True, 0)
    model = Net(fit.arch, *MNIST)
    assert sum(p.numel() for p in model.parameters()) == fit.params
    assert 1470 <= fit.params <= 1500
    assert any(isinstance(m, InvertedBottleneck) for m in model.modules())
    assert any(isinstance(m, Residual) for m in model.modules())


def test_corrections_change_one_stage_first_then_two_then_more_by_at_most_two() -> None:
    deltas = list(corrections(4, 3))
    changed = [sum(d != 0 for d in delta) for delta in deltas]
    assert changed == sorted(changed) and changed[0] == 1 and max(changed) == 4
    assert len(set(deltas)) == len(deltas)
    assert all(
        max(map(abs, d)) <= (3 if n <= 2 else 2) for d, n in zip(deltas, changed, strict=True)
    )


def test_a_net_a_few_channels_wide_is_fitted_by_correcting_three_stages() -> None:
    # Inverted bottlenecks with 7x7 kernels at 1.5K: two or three channels a stage, each
    # worth more than the 30-parameter window; no one- or two-stage correction lands in it.
    arch = ArchSpec(
        stages=(StageSpec(8, kernel=7), StageSpec(12, blocks=2, kernel=7), StageSpec(16, kernel=3)),
        stem_channels=4,
        separable_from=0,
        expansion=3,
    )
    fit = fit_to_budget(arch, *MNIST, 1500)
    assert 1470 <= fit.params <= 1500
    assert sum(d != 0 for d in fit.arch.channel_delta) >= 3
