"""The on-device pipeline: augmentations match their definitions, batches are normalised,
shuffled reproducibly, and come in the requested memory format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.data import DeviceData
from trainer.data.augment import random_crop_flip


def batch(n: int = 64, c: int = 3, h: int = 9, w: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return x.contiguous(memory_format=torch.channels_last)


def windows(image: torch.Tensor, padding: int) -> dict[tuple[int, int], torch.Tensor]:
    """Every (dy, dx) window of the reflect-padded image, built the obvious way."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image[None].float(), (padding,) * 4, mode="reflect")[0]
    return {
        (dy, dx): padded[:, padding + dy : padding + dy + h, padding + dx : padding + dx + w]
        for dy in range(-padding, padding + 1)
        for dx in range(-padding, padding + 1)
    }


@pytest.mark.parametrize("padding", [1, 3])
def test_crop_is_a_shifted_window_of_the_padded_image(padding: int) -> None:
    x = batch()
    out = random_crop_flip(x, padding, False, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last)
    shifts = set()
    for i in range(len(x)):
        found = [s for s, win in windows(x[i], padding).items() if torch.equal(win, out[i].float())]
        assert found, f"image {i} is no window within ±{padding}"
        shifts.add(found[0])
    assert len(shifts) > 5  # shifts really vary per image
    assert torch.equal(random_crop_flip(x, 0, False, None), x)


def test_flip_mirrors_about_half() -> None:
    x = batch(n=400)
    out = random_crop_flip(x, 0, True, torch.Generator().manual_seed(2))
    flipped = [i for i in range(len(x)) if not torch.equal(out[i], x[i])]
    for i in range(len(x)):
        assert torch.equal(out[i], x[i].flip(-1) if i in flipped else x[i])
    assert 150 < len(flipped) < 250


def test_crop_flip_is_a_mirrored_window() -> None:
    x = batch(n=100)
    out = random_crop_flip(x, 2, True, torch.Generator().manual_seed(3))
    mirrored = 0
    for i in range(len(x)):
        wins = windows(x[i], 2).values()
        plain = any(torch.equal(win, out[i].float()) for win in wins)
        flipped = any(torch.equal(win.flip(-1), out[i].float()) for win in wins)
        assert plain or flipped
        mirrored += flipped and not plain
    assert 25 < mirrored < 75


def test_crop_padding_too_large() -> None:
    with pytest.raises(ValueError, match="crop padding"):
        random_crop_flip(batch(h=4, w=4), 4, False, None)


def arrays(n: int = 50, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 5, 6, c), dtype=np.uint8), np.arange(n) % 5


@pytest.mark.parametrize("channels_last", [True, False])
def test_batches_are_normalised_in_order(channels_last: bool) -> None:
    x, y = arrays()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    data = DeviceData(x, y, mean, std, channels_last=channels_last)
    assert len(data) == 50 and data.x.dtype == torch.uint8 and data.x.shape == (50, 3, 5, 6)
    got = list(data.batches(16))
    assert [len(b[1]) for b in got] == [16, 16, 16, 2]
    xb = torch.cat([b[0] for b in got])
    expected = (
        torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)
    ) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in got]), torch.from_numpy(y))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert all(b[0].dtype == torch.float32 and b[0].is_contiguous(memory_format=fmt) for b in got)
    assert all(b[1].dtype == torch.int64 for b in got)


def test_shuffle_is_reproducible_and_complete() -> None:
    x, y = arrays()
    data = DeviceData(x, y, (0.5,) * 3, (0.25,) * 3)

    def epoch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        parts = list(data.batches(8, generator=g, shuffle=True, crop_padding=2, flip=True))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    (xa, ya), (xb, yb), (xc, yc) = epoch(0), epoch(0), epoch(1)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(ya, yc) and not torch.equal(xa, xc)
    assert sorted(ya.tolist()) == sorted(y.tolist())


def test_drop_last_and_grayscale() -> None:
    x, y = arrays(n=20, c=1)
    data = DeviceData(x, y, (0.5,), (0.25,))
    got = list(data.batches(8, drop_last=True, flip=True, generator=torch.Generator()))
    assert [len(b[1]) for b in got] == [8, 8]
    assert got[0][0].shape == (8, 1, 5, 6)


def test_bad_construction() -> None:
    x, y = arrays()
    with pytest.raises(ValueError, match="mean and std need 3 values"):
        DeviceData(x, y, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="50 images but 49 labels"):
        DeviceData(x, y[:-1], (0.5,) * 3, (0.2,) * 3)


def test_augmented_batches_keep_images_with_their_labels() -> None:
    """The fused select-crop-flip gather picks each label's own image, cropped or mirrored."""
    x, _ = arrays(n=40)
    y = np.arange(40)  # a label per image, to trace it
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    data = DeviceData(x, y, mean, std)
    g = torch.Generator().manual_seed(5)
    for xb, yb in data.batches(16, generator=g, shuffle=True, crop_padding=2, flip=True):
        pixels = xb * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
        pixels = (pixels * 255).round()
        for img, label in zip(pixels, yb.tolist(), strict=True):
            source = torch.from_numpy(x[label]).permute(2, 0, 1)
            wins = windows(source, 2).values()
            assert any(torch.equal(win, img) or torch.equal(win.flip(-1), img) for win in wins)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_batches_match_cpu_with_a_cpu_generator() -> None:
    """A CPU generator draws the same shuffle and augmentations for data on any device."""
    x, y = arrays()
    cpu = DeviceData(x, y, (0.5,) * 3, (0.25,) * 3)
    gpu = DeviceData(x, y, (0.5,) * 3, (0.25,) * 3, device="cuda")
    options = {"shuffle": True, "crop_padding": 2, "flip": True}
    want = list(cpu.batches(16, generator=torch.Generator().manual_seed(0), **options))
    got = list(gpu.batches(16, generator=torch.Generator().manual_seed(0), **options))
    for (xa, ya), (xb, yb) in zip(want, got, strict=True):
        assert xb.device.type == "cuda" and torch.equal(ya, yb.cpu())
        torch.testing.assert_close(xa, xb.cpu())
