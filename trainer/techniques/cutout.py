"""Cutout (DeVries & Taylor 2017)."""

from __future__ import annotations

import torch

from trainer.techniques.base import Hyper, Technique


def cutout_batch(
    x: torch.Tensor,
    size: int,
    centers_y: torch.Tensor,
    centers_x: torch.Tensor,
    apply_mask: torch.Tensor,
) -> torch.Tensor:
    """Zero one `size` x `size` square per image where `apply_mask` is set, clipped at borders.

    `x` is a normalised (N, C, H, W) batch, so zero is the data mean. The square covers rows
    [cy - size // 2, cy - size // 2 + size), columns likewise: exactly `size` wide for odd
    sizes too (the reference's [cy - size // 2, cy + size // 2) is one short for odd sizes).
    Built as one broadcast mask for the whole batch, with no per-image loop.
    """
    _, _, height, width = x.shape
    top = centers_y.view(-1, 1) - size // 2
    left = centers_x.view(-1, 1) - size // 2
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top) & (rows < top + size)  # (N, H)
    in_cols = (cols >= left) & (cols < left + size)  # (N, W)
    hole = in_rows[:, :, None] & in_cols[:, None, :] & apply_mask.view(-1, 1, 1)
    return x.masked_fill(hole[:, None], 0.0)


class Cutout(Technique):
    """With probability `p`, one square hole per image, centre uniform over the image.

    The paper uses side 16 on 32x32 CIFAR-10; 28x28 digits have no canonical value, 8-12 is
    a reasonable range. A side larger than the image is clipped like any hole at a border
    (the search space may reject it). Runs first among batch transforms: holes are cut per
    image, before Mixup mixes images.
    """

    name = "cutout"
    kind = "training"
    summary = "one zeroed square per image"
    source = "DeVries & Taylor 2017"
    hypers = (
        Hyper("size", 8, low=2, high=20, integer=True, doc="side of the hole in pixels"),
        Hyper(
            "p",
            1.0,
            low=0.5,
            high=1.0,
            searched=False,
            doc="probability of a hole per image: 1 in the paper; a space may search [0.5, 1]",
        ),
    )
    batch_order = 10

    def batch(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, height, width = x.shape
        device = generator.device
        centers_y = torch.randint(height, (n,), generator=generator, device=device)
        centers_x = torch.randint(width, (n,), generator=generator, device=device)
        apply_mask = torch.rand(n, generator=generator, device=device) < self.params["p"]
        x = cutout_batch(
            x,
            self.params["size"],
            centers_y.to(x.device),
            centers_x.to(x.device),
            apply_mask.to(x.device),
        )
        return x, targets
