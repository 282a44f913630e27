"""Whole-batch augmentations that run on the batch's own device, with no per-image Python.

All take a (N, C, H, W) tensor of any dtype and memory format (the pipeline passes uint8,
before normalisation, to move four times fewer bytes) and draw their randomness from the
given generator, which may live on another device than the batch: the few random numbers
are drawn there and moved, so a CPU generator reproduces the same augmentations anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None) -> torch.Tensor:
    """Pad each image by `padding` on every side, then crop a random window of the original size.

    Padding reflects the image (like airbench) rather than adding zeros (torchvision's
    default): a black border is an artificial edge the network can latch on to, and reflection
    commutes with per-channel normalisation, so cropping before or after normalising gives the
    same result. The padded image is never built: each output pixel reads the input at a
    reflected, shifted index, out[n, :, i, j] = x[n, :, r(i + dy[n]), r(j + dx[n])] with
    dy, dx uniform in [-padding, padding] and r mirroring about the border pixel.
    """
    return random_crop_flip(x, padding, False, generator)


def random_flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2, drawn independently per image."""
    flip = _draw(generator, x, lambda dev: torch.rand(x.shape[0], generator=generator, device=dev))
    return torch.where(flip.lt(0.5)[:, None, None, None], x.flip(3), x)


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """`random_crop`, then (if `flip`) `random_flip`, as one gather: flipping a crop only
    reverses the column indices it reads, so the pair costs no more than the crop alone."""
    n, _, h, w = x.shape
    if not 0 <= padding < min(h, w):
        raise ValueError(f"crop padding must be in [0, {min(h, w) - 1}] for {h}x{w} images")
    shifts = _draw(
        generator,
        x,
        lambda dev: torch.randint(-padding, padding + 1, (2, n), generator=generator, device=dev),
    )
    rows = _reflect(torch.arange(h, device=x.device) + shifts[0, :, None], h)  # (N, H)
    cols = _reflect(torch.arange(w, device=x.device) + shifts[1, :, None], w)  # (N, W)
    if flip:
        mirror = _draw(generator, x, lambda dev: torch.rand(n, generator=generator, device=dev))
        cols = torch.where(mirror.lt(0.5)[:, None], cols.flip(1), cols)
    # Index the NHWC view so that each gathered element is a whole pixel (C contiguous values
    # for channels_last input); the result permuted back is channels_last.
    nhwc = x.permute(0, 2, 3, 1)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return nhwc[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


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
