"""The dry run's cost table: each configuration's size as it will train, and a training
time measured by a short probe on this machine and scaled to the study."""

from __future__ import annotations

import pytest

from search import ablate, estimate
from spaces import load
from trainer.budget import resolve_arch
from trainer.data import Splits, load_dataset, make_splits
from trainer.models.net import stage_channels


@pytest.fixture(scope="module")
def splits() -> Splits:
    return make_splits(load_dataset("digits", None), val_fraction=0.2, seed=0)


def test_the_probe_sizes_each_configuration_as_it_will_train_and_times_a_step(
    splits: Splits,
) -> None:
    space = load("quickstart")
    design = ablate.make(space, "oat")
    costs = estimate.probe(design, space, splits, estimate.Machine("cpu", 1, 1))
    assert [c.label for c in costs] == [c.label for c in design.configs]
    for config, cost in zip(design.configs, costs, strict=True):
        fit = resolve_arch(
            space.replay(space.default_params(config.techniques)),
            splits.image_shape,
            splits.num_classes,
        )
        assert cost.params == fit.params and 1960 <= cost.params <= 2000  # scaled to 2,000
        assert cost.channels == "-".join(map(str, stage_channels(fit.arch)))
        assert 0 < cost.step_seconds < 1  # 64 images through a 2K-parameter net


def test_the_table_scales_a_step_to_the_study_and_says_it_is_an_estimate(
    splits: Splits,
) -> None:
    space = load("quickstart")  # 12 epochs of 1,149 // 64 = 17 steps
    costs = [
        estimate.Cost("baseline", 1987, "19-17-35", 0.01),
        estimate.Cost("+se", 1981, "14-14-28", 0.02),
    ]
    text = estimate.describe(costs, space, splits, 3, estimate.Machine("cpu", 1, 2))
    assert "an estimate" in text and "on cpu, 1 thread per trial, batch 64" in text
    assert "17 steps per epoch x 12 epochs" in text
    baseline = next(line for line in text.splitlines() if "baseline" in line).split()
    assert baseline == ["baseline", "1,987", "19-17-35", "2.0s", "6.1s"]  # 0.01 x 204 steps
    se = next(line for line in text.splitlines() if "+se" in line).split()
    assert se == ["+se", "1,981", "14-14-28", "4.1s", "12s"]
    assert text.splitlines()[-1] == (
        "estimated training time: 18s in all, about 9.2s with 2 trials at once, plus each "
        "trial's start-up"
    )
    assert "busy" not in text


def test_the_table_says_when_other_work_inflated_the_probe(splits: Splits) -> None:
    """A probe on busy cores runs many times slower than the trials will on idle ones."""
    space = load("quickstart")
    costs = [estimate.Cost("baseline", 1987, "19-17-35", 0.01)]
    busy = estimate.describe(costs, space, splits, 3, estimate.Machine("cpu", 2, 1, 4.2))
    assert busy.splitlines()[-1].startswith(
        "note: other work kept this machine busy as the probe ran (1-minute load 4.2)"
    )
    quiet = estimate.describe(costs, space, splits, 3, estimate.Machine("cpu", 2, 1, 0.3))
    assert "busy" not in quiet
