"""One split resident on a device, served as normalised, augmented batches.

The whole split is one uint8 tensor on the device (CIFAR-10's 50k images are 150 MB), so a
batch is an index into memory that is already there: no workers, no per-sample transforms,
no host-to-device copy per step. Augmentation runs on uint8 before normalisation, then one
fused multiply-add turns pixels into (x/255 - mean)/std.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from trainer.data.augment import random_crop_flip
from trainer.data.base import shared_tensor


class DeviceData:
    """A split's images (N, C, H, W uint8) and labels (N int64) held on `device`."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        channels_last: bool = True,
    ) -> None:
        if x.ndim != 4 or x.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, H, W, C) images, got {x.dtype} {x.shape}")
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        channels = x.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values, got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.channels_last = channels_last
        # NHWC memory permuted to NCHW is exactly channels_last; the copy to the device makes
        # it contiguous in the format the model will consume.
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        # Stored channels_last whatever the output format: that is the NHWC memory `x` already
        # has (one plain copy), and it lets augmentation gather whole pixels.
        self.x = shared_tensor(x).permute(0, 3, 1, 2).to(self.device, copy=True)
        self.y = shared_tensor(y).to(self.device, torch.int64, copy=True)
        # (x/255 - mean)/std == x * scale + shift, one fused op per batch. Scale and shift are
        # stored at full (1, C, H, W) size in the batch's memory format: broadcasting a
        # (1, C, 1, 1) tensor over channels_last data makes an inner loop of length C, which
        # measured several times slower on CPU than this plain elementwise op.
        # In the default dtype: float32, unless a test trains in float64 to compare exactly.
        dtype = torch.get_default_dtype()
        std_t = torch.tensor(std, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=dtype, device=self.device).view(1, -1, 1, 1)
        full = (1, channels, *x.shape[1:3])
        self._scale = (1.0 / (255.0 * std_t)).expand(full).contiguous(memory_format=self._format)
        self._shift = (-mean_t / std_t).expand(full).contiguous(memory_format=self._format)

    def __len__(self) -> int:
        return self.x.shape[0]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images to (x/255 - mean)/std in the default dtype, keeping `x`'s memory
        format."""
        return torch.addcmul(self._shift, x.to(self._scale.dtype), self._scale)

    def batches(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        shuffle: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (normalised float images, int64 labels) on the device.

        Shuffling, cropping and flipping all draw from `generator`, so the same generator
        state gives the same epoch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        n = len(self)
        if shuffle:
            draw = generator.device if generator is not None else self.device
            order = torch.randperm(n, generator=generator, device=draw).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            if crop_padding or flip:
                x = random_crop_flip(self.x, crop_padding, flip, generator, index=idx)
            else:
                x = self.x[idx]
            yield self.normalize(x).contiguous(memory_format=self._format), self.y[idx]
