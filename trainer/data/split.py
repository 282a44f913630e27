"""A seeded, stratified train/validation split that every trial of a study shares.

Stratified so that each class keeps its share in both parts (a small data set's validation
accuracy would otherwise swing with which classes the draw happened to favour); seeded so
that every trial, in any process, trains and validates on exactly the same images.
"""

from __future__ import annotations

import numpy as np

from trainer.data.base import DataError, ImageSet, Splits, channel_stats


def stratified_indices(
    labels: np.ndarray, num_classes: int, fraction: float, seed: int, *, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out), holding out `fraction` of every class.

    Per-class counts come from largest-remainder rounding, so the total is `fraction` of the
    whole rounded and each class is within one sample of its exact share; every class keeps at
    least one sample on each side, which is why a class needs two. Both index arrays are sorted.
    """
    n = len(labels)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"{what} fraction must be between 0 and 1 (exclusive), got {fraction}")
    target = round(n * fraction)
    if target == 0:
        raise DataError(
            f"{what} fraction {fraction} of {n} samples gives 0 {what} samples; "
            f"use a larger fraction or a data set of at least {np.ceil(0.5 / fraction):.0f} samples"
        )
    counts = np.bincount(labels, minlength=num_classes)
    too_small = [c for c in range(num_classes) if counts[c] < 2]
    if too_small:
        detail = ", ".join(f"class {c} has {counts[c]}" for c in too_small[:5])
        raise DataError(
            f"data set too small for a stratified {what} split: {detail}; every class needs "
            f"at least 2 samples so that it appears in both parts"
        )
    exact = counts * fraction
    held = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - held), kind="stable")
    held[by_remainder[: max(target - int(held.sum()), 0)]] += 1
    held = np.clip(held, 1, counts - 1)

    rng = np.random.default_rng(seed)
    kept_parts, held_parts = [], []
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        held_parts.append(members[: held[c]])
        kept_parts.append(members[held[c] :])
    return np.sort(np.concatenate(kept_parts)), np.sort(np.concatenate(held_parts))


def make_splits(data: ImageSet, *, val_fraction: float, seed: int) -> Splits:
    """Hold out a seeded, stratified `val_fraction` of the training set for validation.

    The test set is passed through untouched; mean and std come from what remains for training.
    """
    train_idx, val_idx = stratified_indices(
        data.y_train, data.num_classes, val_fraction, seed, what="validation"
    )
    x_train = data.x_train[train_idx]
    mean, std = channel_stats(x_train)
    return Splits(
        x_train=x_train,
        y_train=data.y_train[train_idx],
        x_val=data.x_train[val_idx],
        y_val=data.y_train[val_idx],
        x_test=data.x_test,
        y_test=data.y_test,
        mean=mean,
        std=std,
        classes=data.classes,
    )
