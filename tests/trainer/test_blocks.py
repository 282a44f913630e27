"""The blocks against their definitions: filters, parameter counts, shapes, shortcuts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.blurpool import BlurPool2d, binomial_filter
from trainer.models.inverted_bottleneck import InvertedBottleneck
from trainer.models.net import ConvBNAct
from trainer.models.residual import Projection, Residual
from trainer.models.separable import SeparableConv2d
from trainer.models.squeeze_excite import SqueezeExcite, se_hidden_width


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def relative_shift_change(f: object, x: torch.Tensor) -> float:
    """How much f's output changes, relative to its size, when x shifts one pixel right."""
    a, b = f(x), f(torch.roll(x, 1, dims=3))  # type: ignore[operator]
    return ((a - b).norm() / a.norm()).item()


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_binomial_filter_sums_to_one_and_is_outer_product(size: int) -> None:
    k = binomial_filter(size)
    assert k.shape == (size, size)
    assert k.sum().item() == pytest.approx(1.0)
    row = k.sum(0)
    torch.testing.assert_close(k, torch.outer(row, row))
    assert k[0, 0] * 4 ** (size - 1) == pytest.approx(1.0)  # corner = 1 / (2^(n-1))^2


def test_binomial_filter_rejects_other_sizes() -> None:
    with pytest.raises(ValueError, match="one of 2, 3, 4, 5"):
        binomial_filter(6)


@pytest.mark.parametrize("channels", [1, 4, 16])
@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_blurpool_has_no_parameters_and_halves_resolution(channels: int, size: int) -> None:
    blur = BlurPool2d(channels, size)
    assert n_params(blur) == 0
    out = blur(torch.randn(2, channels, 28, 28))
    assert out.shape == (2, channels, 14, 14)


def test_blurpool_is_per_channel_and_keeps_constants() -> None:
    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 8, 8)
    torch.testing.assert_close(BlurPool2d(4, 3)(x), x[:, :, :4, :4])


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_blurpool_is_more_shift_stable_than_plain_downsampling(size: int) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blur = BlurPool2d(3, size)
    # Blur(s2) against plain subsampling, and MaxPool(s1) + Blur(s2) against MaxPool(s2).
    assert relative_shift_change(blur, x) < relative_shift_change(lambda t: t[..., ::2, ::2], x)
    blurred_max = relative_shift_change(lambda t: blur(F.max_pool2d(t, 2, 1)), x)
    assert blurred_max < 0.7 * relative_shift_change(lambda t: F.max_pool2d(t, 2), x)


def test_blurpool_removes_the_nyquist_stripe_that_subsampling_aliases() -> None:
    # Columns +1, -1, +1, ...: subsampling sees all +1, or all -1 after a one-pixel shift.
    stripes = (-1.0) ** torch.arange(16.0).expand(1, 1, 16, 16)
    shifted = torch.roll(stripes, 1, dims=3)
    assert (stripes[..., ::2, ::2] - shifted[..., ::2, ::2]).abs().min() == 2
    blur = BlurPool2d(1, 3)
    torch.testing.assert_close(blur(stripes), torch.zeros(1, 1, 8, 8))
    torch.testing.assert_close(blur(shifted), torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize(
    ("channels", "ratio", "hidden"),
    [(16, 1 / 16, 1), (8, 1 / 16, 1), (16, 0.25, 4), (12, 0.25, 3), (10, 0.25, 2), (64, 0.5, 32)],
)
def test_se_hidden_width_rule(channels: int, ratio: float, hidden: int) -> None:
    assert se_hidden_width(channels, ratio) == hidden


@pytest.mark.parametrize(("channels", "ratio"), [(1, 0.25), (8, 0.0625), (16, 0.25), (24, 0.5)])
def test_squeeze_excite_parameter_count(channels: int, ratio: float) -> None:
    h = se_hidden_width(channels, ratio)
    assert n_params(SqueezeExcite(channels, ratio)) == 2 * channels * h + h + channels


def test_squeeze_excite_scales_channels_by_a_gate_in_0_1() -> None:
    torch.manual_seed(0)
    se = SqueezeExcite(4, 0.5)
    x = torch.rand(2, 4, 5, 5) + 0.1
    gate = se(x) / x
    # One gate per (sample, channel), constant over space, strictly between 0 and 1.
    torch.testing.assert_close(gate, gate[:, :, :1, :1].expand_as(gate))
    assert ((gate > 0) & (gate < 1)).all()


@pytest.mark.parametrize(("cin", "cout", "k"), [(1, 8, 3), (8, 16, 3), (16, 16, 5)])
def test_separable_parameter_count(cin: int, cout: int, k: int) -> None:
    conv = SeparableConv2d(cin, cout, k)
    assert n_params(conv) == k * k * cin + 2 * cin + cin * cout + 2 * cout


@pytest.mark.parametrize(("k", "stride", "side"), [(3, 1, 28), (5, 1, 28), (3, 2, 14)])
def test_separable_keeps_resolution_unless_strided(k: int, stride: int, side: int) -> None:
    out = SeparableConv2d(4, 6, k, stride)(torch.randn(2, 4, 28, 28))
    assert out.shape == (2, 6, side, side)
    assert (out >= 0).all()


def test_separable_without_output_activation_is_linear() -> None:
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    conv = SeparableConv2d(4, 6, 3, out_act=False).eval()
    out = conv(x)
    assert (out < 0).any()  # BatchNorm's output, no ReLU after it
    assert n_params(conv) == n_params(SeparableConv2d(4, 6, 3))


# -- residual shortcuts (He et al. 2016) --------------------------------------------------


def zero_last_gamma(module: nn.Module) -> None:
    """Zero the last BatchNorm's scale (its shift is zero at initialisation): the branch
    then outputs zeros and a residual block only its shortcut."""
    last = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    nn.init.zeros_(last.weight)


@pytest.mark.parametrize(("cin", "cout", "stride"), [(4, 6, 1), (6, 6, 2), (3, 5, 2)])
def test_projection_is_1x1_conv_and_batchnorm(cin: int, cout: int, stride: int) -> None:
    proj = Projection(cin, cout, stride)
    conv, bn = proj
    assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d)
    assert n_params(proj) == cin * cout + 2 * cout


@pytest.mark.parametrize(
    ("cin", "cout", "stride", "identity"), [(6, 6, 1, True), (4, 6, 1, False), (6, 6, 2, False)]
)
def test_residual_adds_the_shortcut_to_the_branch(
    cin: int, cout: int, stride: int, identity: bool
) -> None:
    torch.manual_seed(0)
    block = Residual(ConvBNAct(cin, cout, 3, stride, out_act=False), cin, cout, stride).eval()
    assert isinstance(block.shortcut, nn.Identity) == identity
    body = n_params(ConvBNAct(cin, cout, 3, stride))
    assert n_params(block) == body + (0 if identity else cin * cout + 2 * cout)
    x = torch.randn(2, cin, 8, 8)
    # Post-activation: ReLU(F(x) + S(x)), the sum of the two paths computed apart.
    torch.testing.assert_close(block(x), F.relu(block.body(x) + block.shortcut(x)))
    zero_last_gamma(block.body)
    expected = F.relu(x) if identity else F.relu(block.shortcut(x))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, cout, 8 // stride, 8 // stride)


def test_a_linear_residual_has_no_activation_after_the_add() -> None:
    torch.manual_seed(0)
    block = Residual(ConvBNAct(4, 6, out_act=False), 4, 6, 1, act=False).eval()
    zero_last_gamma(block.body)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(block(x), block.shortcut(x))
    assert (block(x) < 0).any()


def test_a_residual_block_trains_its_branch_and_its_projection() -> None:
    block = Residual(ConvBNAct(3, 4, out_act=False), 3, 4, 1)
    block(torch.randn(4, 3, 6, 6)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


# -- inverted bottleneck (Sandler et al. 2018) ---------------------------------------------


def ib_params(cin: int, cout: int, t: int, k: int) -> int:
    h = t * cin
    return cin * h + 2 * h + k * k * h + 2 * h + h * cout + 2 * cout


@pytest.mark.parametrize(
    ("cin", "cout", "t", "k", "stride"),
    [(4, 4, 2, 3, 1), (4, 8, 6, 3, 1), (8, 8, 3, 5, 2), (2, 6, 4, 7, 1)],
)
def test_inverted_bottleneck_layers_and_parameter_count(
    cin: int, cout: int, t: int, k: int, stride: int
) -> None:
    block = InvertedBottleneck(cin, cout, t, k, stride)
    assert n_params(block) == ib_params(cin, cout, t, k)
    assert (block.expand.in_channels, block.expand.out_channels) == (cin, t * cin)
    assert block.expand.kernel_size == (1, 1) and block.project.kernel_size == (1, 1)
    dw = block.depthwise
    assert dw.groups == dw.in_channels == dw.out_channels == t * cin
    assert dw.kernel_size == (k, k) and dw.stride == (stride, stride)
    assert (block.project.in_channels, block.project.out_channels) == (t * cin, cout)
    assert isinstance(block.act, nn.ReLU6)
    out = block(torch.randn(2, cin, 9, 9))
    assert out.shape == (2, cout, (9 - 1) // stride + 1, (9 - 1) // stride + 1)
    assert block.identity == (stride == 1 and cin == cout)


def test_inverted_bottleneck_adds_its_input_only_when_it_keeps_the_shape() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    same = InvertedBottleneck(4, 4, 3).eval()
    # The definition, layer by layer: expand, act, depthwise, act, project; no act at the end.
    y = same.act(same.bn1(same.expand(x)))
    y = same.act(same.bn2(same.depthwise(y)))
    torch.testing.assert_close(same(x), x + same.bn3(same.project(y)))
    zero_last_gamma(same)
    torch.testing.assert_close(same(x), x)  # the branch is zero: the identity alone
    wider = InvertedBottleneck(4, 6, 3).eval()
    zero_last_gamma(wider)
    torch.testing.assert_close(wider(x), torch.zeros(2, 6, 6, 6))  # no shortcut at all


def test_inverted_bottleneck_output_is_linear_and_its_activation_chosen() -> None:
    torch.manual_seed(0)
    block = InvertedBottleneck(4, 6, 2).eval()
    assert (block(torch.randn(2, 4, 5, 5)) < 0).any()  # no activation after the projection
    assert isinstance(InvertedBottleneck(4, 6, 2, act="relu").act, nn.ReLU)
    with pytest.raises(ValueError, match="activation 'gelu': expected one of relu6, relu"):
        InvertedBottleneck(4, 6, 2, act="gelu")
