"""The one training loop every trial runs, read top to bottom.

Techniques plug into fixed slots (see `trainer/techniques/base.py`): the architecture is
rewritten before the model is built, batch transforms run on whole device tensors, one
technique may own the optimisation step, one the schedule, and one the averaging phase.
Given a checkpoint path, a trial saves its state there after every epoch and, started again,
continues from the last one saved (see `trainer/checkpoint.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer import checkpoint as checkpoints
from trainer import techniques as registry
from trainer.budget import resolve_arch
from trainer.checkpoint import TrainState
from trainer.data import DeviceData, Splits
from trainer.measure import RUNS, count_flops, count_params, measure_latency
from trainer.models.net import Net, stage_channels
from trainer.schedule import Phases
from trainer.spec import ArchSpec, TrialSpec
from trainer.techniques.base import SLOT_BATCH, SLOT_STEP, LossFn, owner


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the trial's numbers mean nothing."""


@dataclass
class Result:
    """What one trial measured. `accuracy` is on the validation split, never the test set."""

    accuracy: float
    params: int
    flops: int
    latency_ms: float
    latency_iqr_ms: float
    train_seconds: float
    images_per_second: float
    final_loss: float
    resumed_from_epoch: int  # epochs restored from a checkpoint; 0 when trained from scratch
    batch_size: int  # as trained: the requested size, or the whole train split when smaller
    model: nn.Module

    def metrics(self) -> dict[str, float]:
        """The plain numbers, for reporting across processes."""
        return {k: v for k, v in vars(self).items() if k != "model"}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets. It never smooths: label smoothing is a batch
    transform, so mixed targets are smoothed exactly once."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def plain_step(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), targets)
    loss.backward()
    optimizer.step()
    return loss.detach()


def channels_last_pays(arch: ArchSpec, device: torch.device, threads: int) -> bool:
    """Whether to train and time this network in channels_last memory format.

    Measured here (BENCHMARKS.md): on CPU, channels_last makes depthwise nets 1.3-1.7x
    faster, except narrow nets (under 32 channels) on several threads, where BatchNorm on
    channels_last tensors is slower and the 1.5K-parameter MNIST net trained 2x slower.
    On GPU, convolutions in reduced precision want channels_last.
    """
    return device.type == "cuda" or threads == 1 or max(stage_channels(arch)) >= 32


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 1024) -> float:
    """Top-1 accuracy over `data`."""
    model.eval()
    correct = 0
    for x, y in data.batches(batch_size):
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / len(data)


def train(
    spec: TrialSpec,
    splits: Splits,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    latency_runs: int = RUNS,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: Path | None = None,
) -> Result:
    """Train `spec` on `splits.train`, evaluate on `splits.val`, measure size and latency.

    `on_epoch(epoch, accuracy)`, when given, is called after each epoch (from 1) with the
    validation accuracy of the model as it trains (before any averaging is finalised); it
    may raise to end training there. Without it no epoch is evaluated: it costs a pass
    over the validation split.

    `checkpoint`, when given, is where the state after each epoch is saved; a checkpoint
    there from an earlier attempt at this same trial is resumed from. `train_seconds`
    covers every epoch trained, across attempts.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device)
    torch.manual_seed(spec.seed)
    generator = torch.Generator(device).manual_seed(spec.seed)
    techniques = registry.build(spec.techniques)
    hp = spec.train
    num_classes = splits.num_classes

    # Architecture slot and budget, then the model.
    arch = resolve_arch(spec, splits.image_shape, num_classes).arch
    channels_last = channels_last_pays(arch, device, torch.get_num_threads())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = Net(arch, splits.image_shape, num_classes).to(device, memory_format=memory_format)

    train_data, val_data = (
        DeviceData(x, y, splits.mean, splits.std, device, channels_last)
        for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val))
    )
    batch_size = min(hp.batch_size, len(train_data))
    steps_per_epoch = len(train_data) // batch_size  # drop_last: every step sees a full batch

    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=hp.lr,
        momentum=hp.momentum,
        weight_decay=hp.weight_decay,
        nesterov=hp.nesterov,
    )
    # Schedule slot and averaging: the main schedule, then the averager's (trainer/schedule.py).
    phases = Phases(techniques, hp, optimizer, steps_per_epoch)
    averager = phases.averager
    state = TrainState(model, optimizer, phases.main_scheduler(), generator, techniques)
    step_owner = owner(techniques, SLOT_STEP)
    step = step_owner.step if step_owner else plain_step
    batch_transforms = sorted(
        (t for t in techniques if t.fills(SLOT_BATCH)), key=lambda t: t.batch_order
    )
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    # Resume: a checkpoint of this very trial restores the state after its last saved epoch.
    fingerprint = checkpoints.fingerprint(
        spec, steps_per_epoch=steps_per_epoch, batch_size=batch_size, device=device.type
    )
    saved = (
        checkpoints.load(checkpoint, fingerprint=fingerprint, model=model) if checkpoint else None
    )
    if saved is not None:
        if averager and saved.epoch > phases.averaging_epoch:  # it saved the averaging scheduler
            state.scheduler = phases.begin_averaging()
        saved.restore(state)
    first_epoch = saved.epoch if saved else 0
    final_loss = saved.final_loss if saved else math.nan  # set by every epoch trained

    start = time.perf_counter() - (saved.train_seconds if saved else 0.0)
    loss_sum = torch.zeros((), device=device)
    for epoch in range(first_epoch, hp.epochs):
        if averager and epoch == phases.averaging_epoch:
            state.scheduler = phases.begin_averaging()
        model.train()
        loss_sum.zero_()
        batches = train_data.batches(
            batch_size,
            generator=generator,
            shuffle=True,
            crop_padding=hp.crop_padding,
            flip=hp.flip,
            drop_last=True,
        )
        for x, y in batches:
            targets = F.one_hot(y, num_classes).float()
            for technique in batch_transforms:
                x, targets = technique.batch(x, targets, generator)
            with amp:
                loss = step(model, soft_cross_entropy, x, targets, optimizer)
            loss_sum += loss
            if state.scheduler is not None:
                state.scheduler.step()
        # One host sync per epoch: a NaN in any step makes the sum NaN.
        final_loss = float(loss_sum) / steps_per_epoch
        if not math.isfinite(final_loss):
            raise Diverged(f"training loss became {final_loss} in epoch {epoch + 1}")
        if averager and epoch >= phases.averaging_epoch:
            averager.after_epoch(model)
        paused = time.perf_counter()  # checkpointing, validating and reporting is not training
        if checkpoint is not None:
            checkpoints.save(
                checkpoint,
                state,
                fingerprint=fingerprint,
                epoch=epoch + 1,
                train_seconds=paused - start,
                final_loss=final_loss,
            )
        if on_epoch is not None:
            on_epoch(epoch + 1, evaluate(model, val_data))
        start += time.perf_counter() - paused
    if averager:
        model = averager.finalize(model, lambda: train_data.batches(batch_size))
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - start

    latency = measure_latency(
        model, splits.image_shape, runs=latency_runs, channels_last=channels_last
    )
    return Result(
        accuracy=evaluate(model, val_data),
        params=count_params(model),
        flops=count_flops(model, splits.image_shape),
        latency_ms=latency.median_ms,
        latency_iqr_ms=latency.iqr_ms,
        train_seconds=train_seconds,
        images_per_second=hp.epochs * steps_per_epoch * batch_size / train_seconds,
        final_loss=final_loss,
        resumed_from_epoch=first_epoch,
        batch_size=batch_size,
        model=model,
    )
