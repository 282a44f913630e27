"""The one training loop every trial runs, read top to bottom; trials that share a network
run it together, as one fused group.

Techniques plug into fixed slots (see `trainer/techniques/base.py`): the architecture is
rewritten before the model is built, batch transforms run on whole device tensors, one
technique may own the optimisation step, one the schedule, and one the averaging phase.
Given a checkpoint path, a trial saves its state there after every epoch and, started again,
continues from the last one saved (see `trainer/checkpoint.py`).

A group (which trials may form one: `trainer/group.py`) is K trials trained in one loop.
Each member keeps every object it would have alone: its network, built from its seed, its
optimiser, schedule, generator (data order, crops, flips, Mixup's lambda, Cutout's holes),
technique objects, SWA or EMA average and checkpoint. Only the forward and backward pass is fused
(`trainer/models/fused.py`): the members' batches side by side in channels through one
network, each member's loss its own. Nothing in the loop draws from the process RNG once the
networks are built, so what a member computes does not depend on its group; a member whose
loss turns NaN, or whose `on_epoch` raises (pruned), leaves the group and the others train
on. `train` is the group of one: the same loop, with the member's own network as the fused
one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer import checkpoint as checkpointing
from trainer import techniques as registry
from trainer.budget import resolve_archs
from trainer.checkpoint import TrainState
from trainer.data import DeviceData, Splits
from trainer.group import RULE, group_key
from trainer.measure import RUNS, count_flops, count_params, measure_latency
from trainer.models.fused import fuse, side_by_side
from trainer.models.net import Net, stage_channels
from trainer.schedule import Phases
from trainer.spec import ArchSpec, TrainSpec, TrialSpec
from trainer.techniques.base import (
    SLOT_AFTER_STEP,
    SLOT_BATCH,
    SLOT_FINALIZE,
    SLOT_STEP,
    ForwardBackward,
    StepMember,
    Technique,
    deployed,
    owner,
)


def full_batches(images: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over `images`: full batches only (drop_last, so every
    step sees a whole batch), the batch cut to the data where it is larger, at least one."""
    return max(1, images // min(batch_size, images))


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
    train_seconds: float  # in a group, the group's time: every member trained throughout it
    images_per_second: float  # this trial's images; a group's throughput is its members' sum
    final_loss: float
    resumed_from_epoch: int  # epochs restored from a checkpoint; 0 when trained from scratch
    batch_size: int  # as trained: the requested size, or the whole train split when smaller
    # The trained network (the average, with an averager), whose weights are saved; the
    # numbers above are of it as deployed (`trainer.techniques.deployed`: flip TTA wraps it).
    model: nn.Module

    def metrics(self) -> dict[str, float]:
        """The plain numbers, for reporting across processes."""
        return {k: v for k, v in vars(self).items() if k != "model"}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets. It never smooths: label smoothing is a batch
    transform, so mixed targets are smoothed exactly once. Reduced-precision logits are
    taken in float32 (float64 ones stay float64)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def forward_backward(
    net: nn.Module, x: torch.Tensor, targets: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The fused pass of one step (`ForwardBackward`): member k's logits are the k-th block
    of the output's columns, its loss the mean over its own batch. The sum of the losses is
    differentiated once, which gives each member exactly its own loss's gradient (a mean over
    members would divide every gradient by K)."""
    logits = net(x).chunk(len(targets), dim=1)
    losses = torch.stack([soft_cross_entropy(z, t) for z, t in zip(logits, targets, strict=True)])
    losses.sum().backward()
    return losses.detach()


def plain_step(group: Sequence[StepMember], forward_backward: ForwardBackward) -> torch.Tensor:
    """One plain optimisation step of every member; returns their losses (K,)."""
    for member in group:
        member.optimizer.zero_grad(set_to_none=True)
    losses = forward_backward()
    for member in group:
        member.optimizer.step()
    return losses


def sgd(model: nn.Module, hp: TrainSpec) -> torch.optim.SGD:
    """The trial's optimiser. With `hp.no_wd_bn_bias`, two parameter groups: weight decay
    for the weights of convolutions and linear layers, none for every parameter of one
    dimension or fewer, i.e. BatchNorm weights and biases and every bias (the rule of timm's
    `param_groups_weight_decay`). Without it, one group: the optimiser as it always was."""
    params: list[nn.Parameter] | list[dict] = list(model.parameters())
    if hp.no_wd_bn_bias:
        params = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    return torch.optim.SGD(
        params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.nesterov
    )


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
    validation accuracy of the model as it trains (not its SWA or EMA average), as deployed
    (with flip TTA when on); it may raise to end training there. Without it no epoch is
    evaluated: it costs a pass over the validation split.

    `checkpoint`, when given, is where the state after each epoch is saved; a checkpoint
    there from an earlier attempt at this same trial is resumed from. `train_seconds`
    covers every epoch trained, across attempts. Raises `Diverged` when the loss does.
    """
    report = None if on_epoch is None else (lambda _, epoch, accuracy: on_epoch(epoch, accuracy))
    (result,) = train_group(
        [spec],
        splits,
        device=device,
        threads=threads,
        latency_runs=latency_runs,
        on_epoch=report,
        checkpoints=[checkpoint],
    )
    if isinstance(result, Exception):
        raise result
    return result


@dataclass(eq=False)  # members are compared by identity
class Member:
    """One trial of a group: every object it trains with is the one it would have alone."""

    index: int  # its place among the group's specs
    spec: TrialSpec
    state: TrainState  # network, optimiser, active scheduler, generator, techniques
    phases: Phases
    batch_transforms: list[Technique]
    step_owner: Technique | None
    after_step: list[Technique]  # called after each of its optimiser steps (weight EMA)
    averager: Technique | None  # whose averaged model is evaluated and saved (SWA, EMA)
    fingerprint: str  # what its checkpoint must have been written for
    checkpoint: Path | None
    first_epoch: int  # epochs restored from its checkpoint; 0 when trained from scratch
    final_loss: float  # mean training loss of its last epoch
    train_seconds: float  # across attempts; in a group, the group's time
    failure: Exception | None = None  # why it left the group: Diverged, or raised by on_epoch

    @classmethod
    def start(
        cls,
        index: int,
        spec: TrialSpec,
        arch: ArchSpec,
        splits: Splits,
        *,
        device: torch.device,
        memory_format: torch.memory_format,
        batch_size: int,
        steps_per_epoch: int,
        checkpoint: Path | None,
    ) -> Member:
        """The trial as it starts alone, or as its checkpoint left it."""
        torch.manual_seed(spec.seed)  # its initial weights: the same in any group
        generator = torch.Generator(device).manual_seed(spec.seed)
        techniques = registry.build(spec.techniques)
        hp = spec.train
        model = Net(arch, splits.image_shape, splits.num_classes)
        model = model.to(device, memory_format=memory_format)
        optimizer = sgd(model, hp)
        # Schedule slot and averaging: the main schedule, then the averager's (trainer/schedule.py).
        phases = Phases(techniques, hp, optimizer, steps_per_epoch)
        state = TrainState(model, optimizer, phases.main_scheduler(), generator, techniques)
        # Resume: a checkpoint of this very trial restores the state after its last saved epoch.
        fingerprint = checkpointing.fingerprint(
            spec, steps_per_epoch=steps_per_epoch, batch_size=batch_size, device=device.type
        )
        saved = (
            checkpointing.load(checkpoint, fingerprint=fingerprint, model=model)
            if checkpoint
            else None
        )
        if saved is not None:
            if phases.averager and saved.epoch > phases.averaging_epoch:  # it saved SWA's scheduler
                state.scheduler = phases.begin_averaging()
            saved.restore(state)
        return cls(
            index=index,
            spec=spec,
            state=state,
            phases=phases,
            batch_transforms=sorted(
                (t for t in techniques if t.fills(SLOT_BATCH)), key=lambda t: t.batch_order
            ),
            step_owner=owner(techniques, SLOT_STEP),
            after_step=[t for t in techniques if t.fills(SLOT_AFTER_STEP)],
            averager=owner(techniques, SLOT_FINALIZE),
            fingerprint=fingerprint,
            checkpoint=checkpoint,
            first_epoch=saved.epoch if saved else 0,
            final_loss=saved.final_loss if saved else math.nan,  # set by every epoch trained
            train_seconds=saved.train_seconds if saved else 0.0,
        )

    @property
    def model(self) -> nn.Module:
        return self.state.model

    def deployed(self, model: nn.Module) -> nn.Module:
        """`model` as this trial predicts with it (`trainer.techniques.deployed`)."""
        return deployed(model, self.state.techniques)

    def batches(
        self, data: DeviceData, batch_size: int, num_classes: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of its training batches and soft targets, drawn from its generator."""
        hp, generator = self.spec.train, self.state.generator
        for x, y in data.batches(
            batch_size,
            generator=generator,
            shuffle=True,
            crop_padding=hp.crop_padding,
            flip=hp.flip,
            drop_last=True,  # every step sees a full batch
        ):
            targets = F.one_hot(y, num_classes).to(x.dtype)
            for technique in self.batch_transforms:
                x, targets = technique.batch(x, targets, generator)
            yield x, targets


def train_group(
    specs: Sequence[TrialSpec],
    splits: Splits,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    latency_runs: int = RUNS,
    on_epoch: Callable[[int, int, float], None] | None = None,
    checkpoints: Sequence[Path | None] | None = None,
) -> list[Result | Exception]:
    """Train `specs` as one fused group; each member's `Result` is what `train` alone gives
    it, to rounding (fused kernels add in another order), or the exception that ended it.

    `on_epoch(member, epoch, accuracy)` is `train`'s `on_epoch` for member `specs[member]`;
    an Exception it raises ends that member alone (its result is that exception), anything
    else (KeyboardInterrupt) the group. `checkpoints` holds one path (or None) per member, in
    `train`'s format: a member resumes alone or in any group. Members whose checkpoints
    reached different epochs join the group at the epoch their own checkpoint reached.
    `train_seconds` is the group's time: every member trained throughout it.
    Raises ValueError when the specs may not share a group (`trainer.group.RULE`).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device)
    num_classes = splits.num_classes
    paths = list(checkpoints) if checkpoints is not None else [None] * len(specs)
    if len(paths) != len(specs) or not specs:
        raise ValueError(f"{len(specs)} trial specs but {len(paths)} checkpoint paths")

    # Architecture slot and budget: each member's, and one network for all of them.
    archs = resolve_archs(specs, splits.image_shape, num_classes)
    if len({group_key(spec, arch) for spec, arch in zip(specs, archs, strict=True)}) > 1:
        raise ValueError(f"these trials may not share a group. {RULE}")
    hp = specs[0].train  # batch size and epochs are the group's
    channels_last = channels_last_pays(archs[0], device, torch.get_num_threads())
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    train_data, val_data = (
        DeviceData(x, y, splits.mean, splits.std, device, channels_last)
        for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val))
    )
    batch_size = min(hp.batch_size, len(train_data))
    steps_per_epoch = full_batches(len(train_data), hp.batch_size)
    members = [
        Member.start(
            i,
            spec,
            arch,
            splits,
            device=device,
            memory_format=memory_format,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            checkpoint=path,
        )
        for i, (spec, arch, path) in enumerate(zip(specs, archs, paths, strict=True))
    ]
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    group: list[Member] = []
    for epoch in range(min(m.first_epoch for m in members), hp.epochs):
        # A member trains from the epoch its checkpoint reached until it fails; the fused
        # network is rebuilt when one joins or leaves, so a member gone costs nothing.
        live = [m for m in members if m.failure is None and m.first_epoch <= epoch]
        if not live:
            continue
        if live != group:
            group = live
            net = fuse([m.model for m in group])
            stepping = [StepMember(m.step_owner, m.model, m.state.optimizer) for m in group]
            step = group[0].step_owner.step if group[0].step_owner else plain_step
        epoch_start = time.perf_counter()
        for m in group:
            if m.phases.averager and epoch == m.phases.averaging_epoch:
                m.state.scheduler = m.phases.begin_averaging()
            m.model.train()
        net.train()
        loss_sums = torch.zeros(len(group), device=device)
        for batches in zip(
            *(m.batches(train_data, batch_size, num_classes) for m in group), strict=True
        ):
            x = side_by_side([x for x, _ in batches])
            with amp:
                loss_sums += step(
                    stepping, partial(forward_backward, net, x, [t for _, t in batches])
                )
            for m in group:
                for technique in m.after_step:
                    technique.after_step(m.model)
                if m.state.scheduler is not None:
                    m.state.scheduler.step()
        # One host sync per epoch: a NaN in any step makes that member's sum NaN, and only its.
        for m, loss_sum in zip(group, loss_sums.tolist(), strict=True):
            m.final_loss = loss_sum / steps_per_epoch
            if not math.isfinite(m.final_loss):
                m.failure = Diverged(f"training loss became {m.final_loss} in epoch {epoch + 1}")
            elif m.phases.averager and epoch >= m.phases.averaging_epoch:
                m.phases.averager.after_epoch(m.model)
        trained = time.perf_counter() - epoch_start  # checkpoints and validation are not training
        for m in group:
            m.train_seconds += trained
            if m.failure is None and m.checkpoint is not None:
                checkpointing.save(
                    m.checkpoint,
                    m.state,
                    fingerprint=m.fingerprint,
                    epoch=epoch + 1,
                    train_seconds=m.train_seconds,
                    final_loss=m.final_loss,
                )
        for m in group:  # after every checkpoint is written: a kill here loses no epoch
            if m.failure is None and on_epoch is not None:
                try:
                    on_epoch(m.index, epoch + 1, evaluate(m.deployed(m.model), val_data))
                except Exception as err:  # pruned, or stopped by its caller: this member ends
                    m.failure = err

    # Each member alone again: finalise its averaging, then measure it as deployed.
    results: list[Result | Exception] = []
    for m in members:
        if m.failure is not None:
            results.append(m.failure)
            continue
        finishing = time.perf_counter()
        model = m.model
        if m.averager:
            model = m.averager.finalize(model, lambda: train_data.batches(batch_size))
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = m.train_seconds + time.perf_counter() - finishing
        served = m.deployed(model)
        latency = measure_latency(
            served, splits.image_shape, runs=latency_runs, channels_last=channels_last
        )
        results.append(
            Result(
                accuracy=evaluate(served, val_data),
                params=count_params(served),
                flops=count_flops(served, splits.image_shape),
                latency_ms=latency.median_ms,
                latency_iqr_ms=latency.iqr_ms,
                train_seconds=train_seconds,
                images_per_second=hp.epochs * steps_per_epoch * batch_size / train_seconds,
                final_loss=m.final_loss,
                resumed_from_epoch=m.first_epoch,
                batch_size=batch_size,
                model=model,
            )
        )
    return results
