"""Whole-batch augmentations that run on the batch's own device, with no per-image Python.

All take (N, C, H, W) tensors of any dtype (the pipeline passes uint8, before normalisation,
to move four times fewer bytes) and return channels_last results. Randomness comes from the
given generator, which may live on another device than the images: the few random numbers
are drawn there and moved, so a CPU generator reproduces the same augmentations anywhere.

Crop and flip are one operation underneath: both only change which input pixel each output
pixel reads, so `random_crop_flip` computes one flat pixel index per output pixel and does a
single `index_select` (which can also pick the batch out of a whole resident data set). On
CPU that measured 5x faster than indexing with broadcast (batch, row, column) tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def random_crop_flip(
    x: torch.Tensor,
    padding: int,
    flip: bool,
    generator: torch.Generator | None,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Randomly crop and, if `flip`, mirror the images `x[index]` (all if None).

    Crop: pad each image by `padding` on every side, then take a random window of the
    original size. Padding reflects the image (like airbench) rather than adding zeros
    (torchvision's default): a black border is an artificial edge the network can latch on
    to, and reflection commutes with per-channel normalisation, so cropping before or after
    normalising gives the same result. The padded image is never built: each output pixel
    reads the input at a reflected, shifted index, out[n, :, i, j] = x[n, :, r(i + dy[n]),
    r(j + dx[n])] with dy, dx uniform in [-padding, padding] and r mirroring about the
    border pixel. Flip: mirror each image left-right with probability 1/2, drawn
    independently per image; flipping a crop only reverses the columns it reads, so the pair
    costs one gather. `x` in channels_last memory is read in place; other layouts are copied
    to it first.
    """
    total, c, h, w = x.shape
    if not 0 <= padding < min(h, w):
        raise ValueError(f"crop padding must be in [0, {min(h, w) - 1}] for {h}x{w} images")
    if index is None:
        index = torch.arange(total, device=x.device)
    n = index.shape[0]
    rows = torch.arange(h, device=x.device).expand(n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if padding:
        shifts = _draw(
            generator,
            x,
            lambda dev: torch.randint(
                -padding, padding + 1, (2, n), generator=generator, device=dev
            ),
        )
        rows = _reflect(rows + shifts[0, :, None], h)
        cols = _reflect(cols + shifts[1, :, None], w)
    if flip:
        mirror = _draw(generator, x, lambda dev: torch.rand(n, generator=generator, device=dev))
        cols = torch.where(mirror.lt(0.5)[:, None], cols.flip(1), cols)
    pixels = x.permute(0, 2, 3, 1).contiguous().view(total * h * w, c)  # no copy if channels_last
    flat = (index[:, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]
    return pixels.index_select(0, flat.view(-1)).view(n, h, w, c).permute(0, 3, 1, 2)


def _draw(
    generator: torch.Generator | None,
    x: torch.Tensor,
    sample: Callable[[torch.device], torch.Tensor],
) -> torch.Tensor:
    """Random numbers drawn on the generator's device, returned on `x`'s."""
    device = generator.device if generator is not None else x.device
    return sample(device).to(x.device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-(size-1), 2(size-1)] into [0, size-1] by mirroring at the borders."""
    last = size - 1
    return last - (last - index.abs()).abs()
