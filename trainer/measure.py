"""Size and speed of a model: parameters and FLOPs without allocating, latency by timing.

Parameters, FLOPs and latency disagree for depthwise convolutions (memory-bound), so the
search measures all three rather than inferring one from another.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainer.models.net import Net
from trainer.spec import ArchSpec


def meta_model(arch: ArchSpec, in_shape: tuple[int, int, int], num_classes: int) -> Net:
    """The network on the meta device: shapes only, no memory, built in milliseconds."""
    with torch.device("meta"):
        return Net(arch, in_shape, num_classes)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, BatchNorm affine terms and biases included (they matter at 1.5K)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, in_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass at batch size 1, by torch's own counter.

    The counter sees matrix multiplies and convolutions (2 FLOPs per multiply-add); the
    elementwise work of BatchNorm, ReLU and pooling is not counted.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *in_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


WARMUP = 10  # untimed calls first: allocator, kernel selection, caches
RUNS = 50  # timed calls inside a trial


@dataclass(frozen=True)
class Latency:
    median_ms: float
    iqr_ms: float
    runs: int


def measure_latency(
    model: nn.Module,
    in_shape: tuple[int, int, int],
    *,
    warmup: int = WARMUP,
    runs: int = RUNS,
    channels_last: bool = True,
) -> Latency:
    """Batch-1 inference latency on the model's device: median and IQR of `runs` timed calls.

    Warm-up first (allocator, kernel selection, caches); on CUDA every call is synchronised
    so the time is the kernel's, not the launch's. The caller fixes the thread count.
    """
    device = next(model.parameters()).device
    x = torch.randn(1, *in_shape, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return Latency(statistics.median(times), q3 - q1, runs)
