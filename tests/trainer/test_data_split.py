"""The validation split: disjoint, stratified, seeded, and normalised from training data only."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data import DataError, ImageSet, make_splits


def image_set(counts: list[int], hw: tuple[int, int] = (4, 4), channels: int = 3) -> ImageSet:
    """Class c has counts[c] images; image i is filled with the value i % 256 so that
    split images can be traced back to their index."""
    y = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(1)
    y = y[rng.permutation(len(y))]
    x = np.empty((len(y), *hw, channels), dtype=np.uint8)
    x[:] = (np.arange(len(y)) % 256)[:, None, None, None]
    test_x = np.zeros((len(counts), *hw, channels), dtype=np.uint8)
    names = tuple(f"c{i}" for i in range(len(counts)))
    return ImageSet("toy", x, y, test_x, np.arange(len(counts)), names)


def test_disjoint_and_complete() -> None:
    data = image_set([30, 50, 20])  # 100 images, each value unique
    s = make_splits(data, val_fraction=0.2, seed=0)
    train_ids = set(s.x_train[:, 0, 0, 0].tolist())
    val_ids = set(s.x_val[:, 0, 0, 0].tolist())
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(100))
    assert len(s.x_val) == 20 and len(s.y_train) == 80
    np.testing.assert_array_equal(data.y_train[s.x_train[:, 0, 0, 0]], s.y_train)
    assert s.x_test is data.x_test and s.classes == data.classes
    assert s.num_classes == 3 and s.image_shape == (3, 4, 4)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.33, 0.5])
def test_stratified_within_one_sample(fraction: float) -> None:
    counts = [7, 13, 40, 101, 2]
    s = make_splits(image_set(counts), val_fraction=fraction, seed=3)
    per_class = np.bincount(s.y_val, minlength=len(counts))
    for c, n in enumerate(counts):
        assert abs(per_class[c] - n * fraction) <= 1, (c, per_class[c], n * fraction)
        assert 1 <= per_class[c] <= n - 1
    assert abs(len(s.y_val) - sum(counts) * fraction) <= len(counts)


def test_same_seed_same_split_other_seed_differs() -> None:
    data = image_set([60, 60])
    a = make_splits(data, val_fraction=0.25, seed=7)
    b = make_splits(data, val_fraction=0.25, seed=7)
    c = make_splits(data, val_fraction=0.25, seed=8)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)


def test_mean_std_from_training_split_only() -> None:
    data = image_set([50, 50], channels=2)
    s = make_splits(data, val_fraction=0.3, seed=0)
    pixels = s.x_train.reshape(-1, 2) / 255.0
    np.testing.assert_allclose(s.mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.std, pixels.std(0), rtol=1e-12)
    everything = data.x_train.reshape(-1, 2) / 255.0
    assert abs(s.mean[0] - everything.mean()) > 1e-6  # the held-out images would change it


@pytest.mark.parametrize(
    ("counts", "fraction", "expected"),
    [
        ([10, 1, 10], 0.2, "class 1 has 1"),
        ([10, 0, 10], 0.2, "class 1 has 0"),
        ([3, 3], 0.05, "gives 0 validation samples"),
        ([10, 10], 0.0, "between 0 and 1"),
        ([10, 10], 1.0, "between 0 and 1"),
    ],
)
def test_too_small_or_bad_fraction(counts: list[int], fraction: float, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        make_splits(image_set(counts), val_fraction=fraction, seed=0)
