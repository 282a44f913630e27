"""K networks of one shape trained as one: the members' batches side by side in channels.

Why this mechanism. Each member stays a real `Net` with its own parameters, optimiser and
buffers, exactly the objects a trial alone would train; only the forward (and so the
backward) is fused. `fuse` deep-copies member 0's module tree and replaces every leaf that
holds state by a fused leaf that computes, at call time, with the members' *current*
tensors concatenated: a convolution over K*C channels in K times as many groups, BatchNorm
over K*C channels, the classifier as one batched matrix product. Autograd routes each
member's slice of a concatenated weight's gradient back to that member's own parameter, so
per-member optimisers, schedules, SWA averages and checkpoints need nothing special. The
concatenations cost O(parameters) per step, negligible next to the activations (measured in
bench/bench_fused.py). This is HFTA's layout (Wang et al., MLSys 2021) without its fused
parameter tensors. `torch.func` (`stack_module_state` + `vmap`) was measured slower on CPU
at every K (the issue's numbers), and its BatchNorm needs stacked buffers in training.

Member k's channels are the k-th block of K*C channels everywhere (member-major): its input
channels, each convolution's groups, each BatchNorm's channels, a flattened map's features
(flatten keeps logical C, H, W order, so member k's features stay one contiguous block) and
its logits. Per-channel operations therefore never mix members: parameter-free modules
(`PASS_THROUGH`) and container code such as residual adds or SE's `x * gate` run unchanged.
Container code that mixes channels (a concatenation along channels, a channel shuffle)
would silently mix members: tests/trainer/test_fused.py trains every registered
architecture fused against alone and would fail on it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.blurpool import BlurPool2d


class FusedConv2d(nn.Module):
    """K members' `Conv2d(in, out, groups=g)` as one convolution with K*g groups: member k's
    group i is group k*g + i, reading input channels and writing output channels of block k."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        if first.padding_mode != "zeros":
            raise ValueError(f"cannot fuse {first}: padding_mode {first.padding_mode!r}")
        self.convs = tuple(convs)  # a tuple, not submodules: the members own their parameters
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.groups = first.groups * len(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([c.weight for c in self.convs])
        bias = torch.cat([c.bias for c in self.convs]) if self.convs[0].bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class FusedBatchNorm2d(nn.Module):
    """K members' `BatchNorm2d(C)` as BatchNorm over K*C channels.

    Batch statistics are per channel, so a member's normalisation sees only its own batch.
    The running statistics are updated in a concatenated copy and copied back into each
    member's own buffers after every training-mode call, with `num_batches_tracked` counted
    as `nn.BatchNorm2d` counts it: the members keep plain buffers of their own (never views
    into a shared one, which `torch.save` would write whole and `deepcopy` would share), so a
    checkpoint, SWA's copy or SAM's frozen statistics see exactly what they would alone.
    """

    def __init__(self, norms: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        first = norms[0]
        if first.momentum is None:  # the cumulative average depends on each member's count
            raise ValueError(f"cannot fuse {first}: momentum=None (cumulative averaging)")
        self.norms = tuple(norms)
        self.momentum, self.eps = first.momentum, first.eps
        self.affine, self.tracking = first.affine, first.track_running_stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = self.norms
        weight = torch.cat([n.weight for n in norms]) if self.affine else None
        bias = torch.cat([n.bias for n in norms]) if self.affine else None
        if not self.tracking:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        mean = torch.cat([n.running_mean for n in norms])
        var = torch.cat([n.running_var for n in norms])
        out = F.batch_norm(x, mean, var, weight, bias, self.training, self.momentum, self.eps)
        if self.training:  # F.batch_norm updated the concatenated copies in place
            with torch.no_grad():
                for n, m, v in zip(
                    norms, mean.chunk(len(norms)), var.chunk(len(norms)), strict=True
                ):
                    n.running_mean.copy_(m)
                    n.running_var.copy_(v)
                    n.num_batches_tracked.add_(1)
        return out


class FusedLinear(nn.Module):
    """K members' `Linear(in, out)` as one batched matrix product: input (..., K*in) is read
    as (K, N, in), each member's block times its own weight, output (..., K*out)."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.linears = tuple(linears)
        self.in_features = linears[0].in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.linears)
        lead = x.shape[:-1]
        members = x.reshape(-1, k, self.in_features).transpose(0, 1)  # (K, N, in)
        weight = torch.stack([lin.weight for lin in self.linears]).transpose(1, 2)  # (K, in, out)
        if self.linears[0].bias is None:
            out = torch.bmm(members, weight)
        else:
            bias = torch.stack([lin.bias for lin in self.linears]).unsqueeze(1)  # (K, 1, out)
            out = torch.baddbmm(bias, members, weight)
        return out.transpose(0, 1).reshape(*lead, -1)  # (N, K, out): member-major features


class FusedBlurPool2d(nn.Module):
    """K members' `BlurPool2d(C)` (a depthwise fixed filter) as one over K*C channels."""

    def __init__(self, blurs: Sequence[BlurPool2d]) -> None:
        super().__init__()
        self.blurs = tuple(blurs)
        self.padding, self.stride = blurs[0].padding, blurs[0].stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch.cat([b.filter for b in self.blurs])
        x = F.pad(x, self.padding, mode="reflect")
        return F.conv2d(x, kernel, stride=self.stride, groups=kernel.shape[0])


# The one table of leaves that hold state (parameters or buffers) and their fused form. An
# exact type, not isinstance: a subclass may compute something else in its forward.
FUSED: dict[type[nn.Module], Callable[[Sequence[nn.Module]], nn.Module]] = {
    nn.Conv2d: FusedConv2d,
    nn.BatchNorm2d: FusedBatchNorm2d,
    nn.Linear: FusedLinear,
    BlurPool2d: FusedBlurPool2d,
}

# Stateless leaves that act on each channel (or, for Flatten, keep each member's features one
# block) and so run unchanged on fused tensors. Not Dropout: it draws from the process RNG,
# not from the member's generator, so a member's masks would depend on its group.
PASS_THROUGH: frozenset[type[nn.Module]] = frozenset(
    {
        nn.ReLU,
        nn.ReLU6,
        nn.SiLU,
        nn.Sigmoid,
        nn.Hardswish,
        nn.Identity,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Flatten,
    }
)


class FuseError(ValueError):
    """Networks that cannot run as one fused network: different shapes, or a module this
    module does not know how to fuse."""


def fuse(models: Sequence[nn.Module]) -> nn.Module:
    """One network computing every member of `models` (same architecture) side by side.

    Its input is the members' batches concatenated along channels (`side_by_side`); its
    output the members' outputs likewise. One model is returned as it is: a group of one is
    the trial alone, without a copy or a concatenation.
    """
    if len(models) == 1:
        return models[0]
    fused = copy.deepcopy(models[0])
    peers = [dict(m.named_modules()) for m in models]
    for name, module in models[0].named_modules():
        kind = type(module)
        members = [p.get(name) for p in peers]
        if any(type(m) is not kind for m in members):
            raise FuseError(f"{name or 'the network'}: the members' modules differ")
        if kind in FUSED:
            if any(repr(m) != repr(module) for m in members):  # shapes, strides, eps, ...
                raise FuseError(f"{name or 'the network'}: the members' {kind.__name__} differ")
            if not name:
                return FUSED[kind](members)  # type: ignore[arg-type]
            _replace(fused, name, FUSED[kind](members))  # type: ignore[arg-type]
        elif _own_state(module):
            raise FuseError(
                f"{name}: {kind.__name__} holds parameters or buffers and has no fused form; "
                "add one to trainer.models.fused.FUSED"
            )
        elif not any(module.children()) and kind not in PASS_THROUGH:
            raise FuseError(
                f"{name}: {kind.__name__} is not known to act per channel; add it to "
                "trainer.models.fused.PASS_THROUGH if it does"
            )
    return fused


def side_by_side(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """The fused network's input: the members' (N, C, H, W) batches as (N, K*C, H, W)."""
    return batches[0] if len(batches) == 1 else torch.cat(list(batches), dim=1)


def _own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
