"""A technique that is on builds what it names, for every value in its range: checked on
the built network itself, for every shipped preset, and for a user's space at validation."""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace

import pytest
import torch
from torch import nn

from spaces import SpaceError, check_build, load, parse, preset_names
from spaces.space import stage_param
from trainer.budget import BudgetError, resolve_arch
from trainer.models.blurpool import BlurPool2d
from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.net import BuildError, ConvBNAct, Net
from trainer.models.residual import Residual
from trainer.models.separable import SeparableConv2d
from trainer.models.squeeze_excite import SqueezeExcite
from trainer.spec import ArchSpec, StageSpec, TrialSpec
from trainer.techniques import REGISTRY, rules

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
BLOCKS = (ConvBNAct, SeparableConv2d, InvertedBottleneck)
BLOCKS_OR = (*BLOCKS, Residual)


def preset_configurations(name: str) -> list[dict[str, dict]]:
    """Each architecture technique the preset declares, at every value of its range (with
    the techniques it requires), alone and with every other one on."""
    space = load(name)
    configs = []
    for tech, choice in space.techniques.items():
        if REGISTRY[tech].kind != "architecture" or choice.switch == "off":
            continue
        grids = [r.grid() for r in choice.hypers.values()]
        for values in itertools.product(*grids):
            needed = {r: {} for r in rules.requirements(tech)}
            configs.append({**needed, tech: dict(zip(choice.hypers, values, strict=True))})
    every = {t: {} for t, c in space.techniques.items() if REGISTRY[t].kind == "architecture"}
    return configs + [{**every, **c} for c in configs]


def blocks_of(stage: nn.Sequential) -> list[nn.Module]:
    """The stage's blocks, each as built inside its residual wrapper if it has one."""
    return [m.body if isinstance(m, Residual) else m for m in stage if isinstance(m, BLOCKS_OR)]


def assert_builds_what_it_names(
    net: Net, techniques: dict[str, dict], shape: tuple[int, int, int]
) -> None:
    stages = list(net.features)[1:]
    depthwise = [
        i
        for i, s in enumerate(stages)
        if any(isinstance(b, SeparableConv2d | InvertedBottleneck) for b in blocks_of(s))
    ]
    if "depthwise" in techniques:
        first = techniques["depthwise"].get("first_stage", 0)
        assert depthwise == list(range(first, len(stages))), "depthwise blocks where declared"
    else:
        assert depthwise == []
    x = net.eval().features[0](torch.zeros(1, *shape))  # one forward pass, stage by stage
    for i, (spec, stage) in enumerate(zip(net.arch.stages, stages, strict=True)):
        layers, blocks = list(stage), blocks_of(stage)
        assert len(blocks) == spec.blocks
        bottleneck = "inverted_bottleneck" in techniques and i in depthwise
        kind = (
            InvertedBottleneck if bottleneck else SeparableConv2d if i in depthwise else ConvBNAct
        )
        assert all(type(b) is kind for b in blocks), f"stage {i}: {kind.__name__} blocks"
        # The stage's declared kernel, else depthwise's in its stages, else 3.
        kernel = spec.kernel or (net.arch.kernel if i in depthwise else 3)
        spatial = [m for b in blocks for m in b.modules() if isinstance(m, nn.Conv2d)]
        assert {m.kernel_size for m in spatial if m.kernel_size != (1, 1)} == {(kernel, kernel)}
        if bottleneck:  # Sandler et al.: expansion by the declared ratio
            t = techniques["inverted_bottleneck"].get("expansion", 6)
            assert all(b.expand.out_channels == t * b.expand.in_channels for b in blocks)
        if "residual" in techniques:  # He et al.: every block has exactly one shortcut
            assert all(
                isinstance(m, Residual) or (isinstance(m, InvertedBottleneck) and m.identity)
                for m in layers[: spec.blocks]
            )
        else:  # only a bottleneck's own identity
            assert not any(isinstance(m, Residual) for m in layers)
        has_se = [isinstance(m, SqueezeExcite) for m in layers]
        if "se" in techniques:  # Hu et al.: after the block's convs, before the downsampling
            at = has_se.index(True)
            assert sum(has_se) == 1 and at == spec.blocks
        else:
            assert not any(has_se)
        # SimpNet: with late_downsample, stage 0 keeps its input's resolution.
        downsamples = spec.downsample and not (i == 0 and "late_downsample" in techniques)
        side, x = x.shape[-1], stage(x)
        assert x.shape[-1] < side if downsamples else x.shape[-1] == side
        if "blurpool" in techniques and downsamples:
            # Zhang 2019: MaxPool(k2, s1) then Blur(s2); nothing subsamples before the blur.
            assert isinstance(layers[-1], BlurPool2d) and layers[-1].stride == 2
            assert isinstance(layers[-2], nn.MaxPool2d) and layers[-2].stride == 1
        else:
            assert not any(isinstance(m, BlurPool2d) for m in stage.modules())
    gap = isinstance(net.head[0], nn.AdaptiveAvgPool2d)
    assert gap == ("gap" in techniques)
    assert net.head(x).shape == (1, 10)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_each_technique_at_every_value(name: str) -> None:
    space = load(name)
    shape = SHAPES[space.data.dataset]
    for techniques in preset_configurations(name):
        spec = TrialSpec(arch=space.arch, techniques=techniques, budget=None)
        fit = resolve_arch(spec, shape, 10)
        net = Net(fit.arch, shape, 10)
        assert_builds_what_it_names(net, techniques, shape)


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


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_searched_stage_blocks_and_kernels_build_what_they_name(kernel: int) -> None:
    space = load("mnist_wide_1_5k")
    on = ["inverted_bottleneck", "residual", "late_downsample", "se", "blurpool"]
    params = space.default_params(on)
    params.update({stage_param(i, "kernel"): kernel for i in range(3)})
    params.update({stage_param(i, "blocks"): 2 for i in (0, 2)})
    params["depthwise.first_stage"] = 1  # stage 0 keeps plain convolutions
    spec = space.replay(params)
    declared = [(s.blocks, s.kernel) for s in spec.arch.stages]
    assert declared == [(2, kernel), (1, kernel), (2, kernel)]
    net = Net(resolve_arch(replace(spec, budget=None), (1, 28, 28), 10).arch, (1, 28, 28), 10)
    assert_builds_what_it_names(net, spec.techniques, (1, 28, 28))


def test_an_inverted_bottleneck_needs_depthwise_stages() -> None:
    arch = ArchSpec(stages=(StageSpec(8), StageSpec(16)))
    spec = TrialSpec(arch=arch, techniques={"inverted_bottleneck": {}}, budget=None)
    with pytest.raises(BuildError, match="inverted_bottleneck needs depthwise on"):
        resolve_arch(spec, (1, 28, 28), 10)


def test_residual_where_every_block_has_its_own_shortcut_is_a_build_error() -> None:
    # Stem 8 -> bottlenecks 8 -> 8 at stride 1: each keeps its shape and its identity.
    arch = ArchSpec(stages=(StageSpec(8, blocks=2),), stem_channels=8)
    techniques = {"depthwise": {}, "inverted_bottleneck": {"expansion": 2}, "residual": {}}
    spec = TrialSpec(arch=arch, techniques=techniques, budget=None)
    with pytest.raises(BuildError, match="residual is on but builds nothing of its own: every"):
        resolve_arch(spec, (1, 28, 28), 10)
    wider = replace(arch, stages=(StageSpec(12, blocks=2),))  # the first block widens: projected
    net = Net(resolve_arch(replace(spec, arch=wider), (1, 28, 28), 10).arch, (1, 28, 28), 10)
    first, second = list(net.features[1])[:2]
    assert isinstance(first, Residual) and isinstance(second, InvertedBottleneck)


def test_late_downsample_on_a_first_stage_that_keeps_its_resolution_is_refused() -> None:
    raw = copy.deepcopy(load("quickstart").source)
    raw["model"]["stages"][0]["downsample"] = False
    raw["techniques"]["late_downsample"] = "search"
    with pytest.raises(SpaceError, match="stage 0 keeps full resolution already"):
        check_build(parse(raw, "my.yaml"), (1, 8, 8), 10)
