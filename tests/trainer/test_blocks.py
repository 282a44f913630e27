"""The three blocks against their definitions: filters, parameter counts, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.blurpool import BlurPool2d, binomial_filter
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
