"""A technique that is on builds what it names, for every value in its range: checked on
the built network itself, for every shipped preset, and for a user's space at validation."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from spaces import SpaceError, check_build, load, parse, preset_names
from trainer.budget import BudgetError, resolve_arch
from trainer.models.blurpool import BlurPool2d
from trainer.models.net import BuildError, Net
from trainer.models.separable import SeparableConv2d
from trainer.models.squeeze_excite import SqueezeExcite
from trainer.spec import ArchSpec, StageSpec, TrialSpec
from trainer.techniques import REGISTRY

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def preset_configurations(name: str) -> list[dict[str, dict]]:
    """Each architecture technique the preset declares, at every value of its range."""
    space = load(name)
    configs = []
    for tech, choice in space.techniques.items():
        if REGISTRY[tech].kind != "architecture" or choice.switch == "off":
            continue
        grids = [r.grid() for r in choice.hypers.values()]
        for values in itertools.product(*grids):
            configs.append({tech: dict(zip(choice.hypers, values, strict=True))})
    every = {t: {} for t, c in space.techniques.items() if REGISTRY[t].kind == "architecture"}
    return configs + [{**every, **c} for c in configs]


def assert_builds_what_it_names(net: Net, techniques: dict[str, dict]) -> None:
    stages = list(net.features)[1:]
    separable = [i for i, s in enumerate(stages) if any(isinstance(m, SeparableConv2d) for m in s)]
    if "depthwise" in techniques:
        first = techniques["depthwise"].get("first_stage", 0)
        assert separable == list(range(first, len(stages))), "separable convs where declared"
    else:
        assert separable == []
    for spec, stage in zip(net.arch.stages, stages, strict=True):
        layers = list(stage)
        has_se = [isinstance(m, SqueezeExcite) for m in layers]
        if "se" in techniques:  # Hu et al.: after the block's convs, before the downsampling
            at = has_se.index(True)
            assert sum(has_se) == 1
            assert all(isinstance(m, SeparableConv2d | nn.Sequential) for m in layers[:at])
            assert all(isinstance(m, nn.MaxPool2d | BlurPool2d) for m in layers[at + 1 :])
        else:
            assert not any(has_se)
        if "blurpool" in techniques and spec.downsample:
            # Zhang 2019: MaxPool(k2, s1) then Blur(s2); nothing subsamples before the blur.
            assert isinstance(layers[-1], BlurPool2d) and layers[-1].stride == 2
            assert isinstance(layers[-2], nn.MaxPool2d) and layers[-2].stride == 1
        else:
            assert not any(isinstance(m, BlurPool2d) for m in stage.modules())
    gap = isinstance(net.head[0], nn.AdaptiveAvgPool2d)
    assert gap == ("gap" in techniques)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_each_technique_at_every_value(name: str) -> None:
    space = load(name)
    shape = SHAPES[space.data.dataset]
    for techniques in preset_configurations(name):
        spec = TrialSpec(arch=space.arch, techniques=techniques, budget=None)
        fit = resolve_arch(spec, shape, 10)
        net = Net(fit.arch, shape, 10)
        assert_builds_what_it_names(net, techniques)
        assert net(torch.zeros(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("name", preset_names())
def test_first_stage_ranges_over_the_stages_that_exist(name: str) -> None:
    space = load(name)
    first_stage = space.techniques["depthwise"].hypers["first_stage"]
    assert (first_stage.low, first_stage.high) == (0, min(3, len(space.arch.stages) - 1))


def test_a_declared_first_stage_beyond_the_stages_is_refused() -> None:
    raw = copy.deepcopy(load("quickstart").source)  # two stages
    raw["techniques"]["depthwise"] = {"enabled": "search", "first_stage": 2}
    with pytest.raises(SpaceError, match=r"first_stage = 2: expected integer in \[0, 1\]"):
        parse(raw, "my.yaml")


def test_a_depthwise_that_builds_nothing_is_a_build_error() -> None:
    arch = ArchSpec(stages=(StageSpec(8), StageSpec(16)))
    spec = TrialSpec(arch=arch, techniques={"depthwise": {"first_stage": 2}}, budget=1500)
    with pytest.raises(BuildError, match="first_stage = 2 builds no separable convolution"):
        resolve_arch(spec, (1, 28, 28), 10)


def test_a_map_too_small_for_the_blur_is_a_build_error_and_refuses_the_space() -> None:
    # 8x8 -> 4x4 -> 2x2 -> a third stage blurs a 1x1 map: reflect padding cannot.
    arch = ArchSpec(stages=(StageSpec(8), StageSpec(8), StageSpec(8)))
    spec = TrialSpec(arch=arch, techniques={"blurpool": {"size": 3}}, budget=None)
    with pytest.raises(BuildError, match=r"stage 2 cannot take its 2x2 input map"):
        resolve_arch(spec, (1, 8, 8), 10)
    assert issubclass(BudgetError, BuildError)  # the search fails both kinds of trial
    raw = copy.deepcopy(load("quickstart").source)
    raw["model"]["stages"].append({"channels": 16})
    space = parse(raw, "my.yaml")
    with pytest.raises(SpaceError, match=r"blurpool.size = 2.*on 1x8x8 images: stage 2 cannot"):
        check_build(space, (1, 8, 8), 10)


def test_blurpool_on_a_model_that_never_downsamples_is_refused() -> None:
    raw = copy.deepcopy(load("quickstart").source)
    for stage in raw["model"]["stages"]:
        stage["downsample"] = False
    with pytest.raises(SpaceError, match="never downsamples, so there is nothing to blur"):
        check_build(parse(raw, "my.yaml"), (1, 8, 8), 10)
