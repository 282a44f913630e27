"""Every accepted source on tiny generated fixtures, every bad input, and the real sets."""

from __future__ import annotations

import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import DataError, load_dataset
from trainer.data.base import channel_stats
from trainer.data.load import CACHE_DIR_ENV, DATA_DIR_ENV, read_env, resolve_data_dir

REAL_DATA = Path(read_env(DATA_DIR_ENV) or Path(__file__).parents[2].parent / "shared" / "data")


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep the decoded-array cache out of the user's home, fresh per test."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    return cache


def arrays(
    n_train: int = 20,
    n_test: int = 10,
    hw: tuple[int, int] = (6, 5),
    channels: int | None = 3,
    k: int = 4,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = hw if channels is None else (*hw, channels)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % k,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % k,
    }


def write_npz(path: Path, **overrides: object) -> Path:
    data: dict[str, object] = {**arrays(), **overrides}
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


# --- npz ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1, None])
def test_npz_hwc_and_grayscale_hw(tmp_path: Path, channels: int | None) -> None:
    raw = arrays(channels=channels)
    np.savez(tmp_path / "set.npz", **raw)
    data = load_dataset(str(tmp_path / "set.npz"))
    c = 1 if channels is None else channels
    assert data.name == "set"
    assert data.x_train.shape == (20, 6, 5, c) and data.x_train.dtype == np.uint8
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.image_shape == (c, 6, 5) and data.num_classes == 4
    assert data.classes == ("0", "1", "2", "3")
    np.testing.assert_array_equal(data.x_train.reshape(raw["x_train"].shape), raw["x_train"])


def test_npz_class_names_and_relative_to_data_dir(tmp_path: Path) -> None:
    write_npz(tmp_path / "named.npz", classes=np.array(["a", "b", "c", "d"]))
    data = load_dataset("named.npz", data_dir=tmp_path)
    assert data.classes == ("a", "b", "c", "d")


def test_npz_resize(tmp_path: Path) -> None:
    data = load_dataset(str(write_npz(tmp_path / "s.npz")), resize=(12, 10))
    assert data.x_train.shape == (20, 12, 10, 3) and data.x_test.shape == (10, 12, 10, 3)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"y_test": None}, ["missing key(s) y_test", "x_train, y_train, x_test, y_test"]),
        (
            {"x_train": np.zeros((20, 6, 5, 3), np.float32)},
            ["x_train has dtype float32", "expected uint8"],
        ),
        (
            {"x_train": np.zeros((20, 6), np.uint8)},
            ["x_train has shape (20, 6)", "(N, H, W, C) or (N, H, W)"],
        ),
        (
            {"x_train": np.zeros((20, 3, 6, 5), np.uint8)},
            ["channels last", "looks like (N, C, H, W)"],
        ),
        (
            {"x_test": np.zeros((10, 7, 5, 3), np.uint8)},
            ["train images are (H, W, C) (6, 5, 3)", "(7, 5, 3)"],
        ),
        ({"y_train": np.arange(19) % 4}, ["y_train has 19 labels but x_train has 20 images"]),
        (
            {"y_train": (np.arange(20) % 4).astype(np.float64)},
            ["y_train has dtype float64", "integer class labels"],
        ),
        ({"y_train": np.arange(20) % 4 - 1}, ["y_train has negative labels", "0..K-1"]),
        (
            {"y_train": np.where(np.arange(20) % 4 == 2, 7, np.arange(20) % 4)},
            ["labels go up to 7", "2, 4, 5, 6 never occur"],
        ),
        ({"y_test": np.arange(10) % 3}, ["train and test label sets differ", "only in train: 3"]),
        ({"classes": np.array(["a", "b"])}, ["2 class names given for 4 classes"]),
    ],
)
def test_npz_bad_inputs(tmp_path: Path, overrides: dict[str, object], expected: list[str]) -> None:
    path = write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError) as err:
        load_dataset(str(path))
    for text in expected:
        assert text in str(err.value)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read as \.npz"):
        load_dataset(str(tmp_path / "junk.npz"))


# --- image folders -----------------------------------------------------------------------


def write_folder(
    root: Path,
    sizes: dict[str, tuple[int, int]] | None = None,
    mode: str = "RGB",
    classes: tuple[str, ...] = ("cat", "dog"),
    test_classes: tuple[str, ...] | None = None,
) -> Path:
    """Three train and one test image per class; `sizes` maps a file stem to its (W, H)."""
    rng = np.random.default_rng(0)
    for part, names in (("train", classes), ("test", test_classes or classes)):
        for c in names:
            (root / part / c).mkdir(parents=True)
            for i in range(3 if part == "train" else 1):
                w, h = (sizes or {}).get(f"{part}-{c}-{i}", (5, 4))
                shape = (h, w, 3) if mode == "RGB" else (h, w)
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                    root / part / c / f"{i}.png"
                )
    return root


@pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("L", 1)])
def test_folder(tmp_path: Path, mode: str, channels: int) -> None:
    root = write_folder(tmp_path / "pets", mode=mode)
    data = load_dataset(str(root))
    assert data.name == "pets" and data.classes == ("cat", "dog")
    assert data.x_train.shape == (6, 4, 5, channels) and data.x_test.shape == (2, 4, 5, channels)
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1] and data.y_test.tolist() == [0, 1]
    first = np.asarray(Image.open(root / "train" / "cat" / "0.png"))
    np.testing.assert_array_equal(data.x_train[0].reshape(first.shape), first)


def test_folder_mixed_sizes_need_resize(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mixed", sizes={"train-dog-1": (9, 7)})
    with pytest.raises(DataError) as err:
        load_dataset(str(root))
    msg = str(err.value)
    assert "images differ in size" in msg and "is 4x5 (HxW)" in msg and "is 7x9" in msg
    assert "resize" in msg
    data = load_dataset(str(root), resize=(8, 8))
    assert data.x_train.shape == (6, 8, 8, 3) and data.x_test.shape == (2, 8, 8, 3)


def test_folder_without_train_test(tmp_path: Path) -> None:
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    with pytest.raises(
        DataError, match=r"no train/ or test/ subfolder.*<root>/train/<class>/<image>"
    ):
        load_dataset(str(tmp_path / "flat"))


def test_folder_class_mismatch(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "odd", test_classes=("cat", "cow"))
    with pytest.raises(
        DataError,
        match=r"different class folders \(only in train: \['dog'\]; only in test: \['cow'\]",
    ):
        load_dataset(str(root))


def test_folder_empty_class(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "e")
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()
    with pytest.raises(DataError, match="class folder holds no images"):
        load_dataset(str(root))


# --- torchvision layouts -----------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (the MNIST format): magic with type 0x08 (ubyte), dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST") -> dict[str, np.ndarray]:
    raw = arrays(n_train=30, n_test=10, hw=(28, 28), channels=None, k=10)
    for prefix, part in (("train", "train"), ("t10k", "test")):
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", raw[f"x_{part}"])
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", raw[f"y_{part}"])
    return raw


@pytest.mark.parametrize(
    ("source", "folder"),
    [("mnist", "MNIST"), ("FashionMNIST", "FashionMNIST"), ("KMNIST", "KMNIST")],
)
def test_mnist_idx_layout(tmp_path: Path, source: str, folder: str) -> None:
    raw = write_mnist(tmp_path, folder)
    data = load_dataset(source, data_dir=tmp_path)
    assert data.x_train.shape == (30, 28, 28, 1) and data.x_test.shape == (10, 28, 28, 1)
    assert data.num_classes == 10 and data.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(data.x_train[..., 0], raw["x_train"])
    np.testing.assert_array_equal(data.y_test, raw["y_test"])


def test_missing_and_partial_mnist(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "was not found" in msg and str(tmp_path) in msg and "--data-dir" in msg
    assert "MNIST/raw/train-images-idx3-ubyte" in msg
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError, match=r"mnist is incomplete.*missing MNIST/raw/t10k-labels-idx1-ubyte"
    ):
        load_dataset("mnist", data_dir=tmp_path)


def test_cifar10_pickle_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks the MD5 of CIFAR's original pickles, which tiny fixtures cannot
    match; the check is patched out here so that only the reading is tested."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
            "labels": list(range(10)),
        }
        batches[name] = batch
        (base / name).write_bytes(pickle.dumps(batch))
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    data = load_dataset("CIFAR10", data_dir=tmp_path)
    assert data.x_train.shape == (50, 32, 32, 3) and data.x_test.shape == (10, 32, 32, 3)
    assert data.classes == tuple(names)
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(data.x_train[0], first)


def test_cifar10_pickles_failing_md5(tmp_path: Path) -> None:
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (base / name).write_bytes(b"x")
    with pytest.raises(DataError, match="failed torchvision's check"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_npz_in_data_dir(tmp_path: Path) -> None:
    raw = arrays(n_train=20, n_test=10, hw=(32, 32), k=10)
    raw["y_train"] = raw["y_train"].astype(np.uint8)  # as in /work/shared/data/cifar10.npz
    np.savez(tmp_path / "cifar10.npz", **raw)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.x_train.shape == (20, 32, 32, 3) and data.y_train.dtype == np.int64
    assert data.classes[0] == "airplane" and data.num_classes == 10


def test_missing_cifar_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", data_dir=tmp_path)
    assert "cifar-100-python/train" in str(err.value) and "cifar100.npz" in str(err.value)


# --- digits, dispatch, cache ---------------------------------------------------------------


def test_digits_embedded() -> None:
    data = load_dataset("digits")
    assert data.x_train.shape == (1438, 8, 8, 1) and data.x_test.shape == (359, 8, 8, 1)
    assert data.num_classes == 10 and data.x_train.max() == 255
    train_counts = np.bincount(data.y_train)
    test_counts = np.bincount(data.y_test)
    np.testing.assert_allclose(test_counts / (train_counts + test_counts), 0.2, atol=0.01)
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_unknown_source_lists_accepted() -> None:
    with pytest.raises(DataError) as err:
        load_dataset("imagenet")
    msg = str(err.value)
    assert "unknown data set 'imagenet'" in msg
    for accepted in (
        "digits",
        "mnist",
        "fashionmnist",
        "kmnist",
        "cifar10",
        "cifar100",
        "svhn",
        ".npz",
        "train/<class>",
    ):
        assert accepted in msg


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.npz"))


def test_bad_resize() -> None:
    with pytest.raises(DataError, match="two positive integers"):
        load_dataset("digits", resize=(0, 8))


def test_cache_hit_and_invalidation(tmp_path: Path, private_cache: Path) -> None:
    path = write_npz(tmp_path / "c.npz")
    first = load_dataset(str(path))
    second = load_dataset(str(path))
    assert isinstance(second.x_train, np.memmap) and not second.x_train.flags.writeable
    assert not first.x_train.flags.writeable
    np.testing.assert_array_equal(first.x_train, second.x_train)
    write_npz(path, x_train=np.full((20, 6, 5, 3), 7, np.uint8))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-clock file systems
    assert load_dataset(str(path)).x_train.max() == 7


def test_older_variable_names_still_work_and_the_new_ones_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("ABLATION_DATA_DIR", str(tmp_path / "old"))
    assert resolve_data_dir() == tmp_path / "old"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "new"))
    assert resolve_data_dir() == tmp_path / "new"

    path = write_npz(tmp_path / "c.npz")
    old, new = tmp_path / "old-cache", tmp_path / "new-cache"
    monkeypatch.delenv(CACHE_DIR_ENV)
    monkeypatch.setenv("ABLATION_CACHE_DIR", str(old))
    load_dataset(str(path))
    assert old.is_dir() and not new.exists()
    monkeypatch.setenv(CACHE_DIR_ENV, str(new))
    load_dataset(str(path))
    assert new.is_dir()
    shutil.rmtree(new)
    monkeypatch.setenv(CACHE_DIR_ENV, "")  # set but empty: the cache is off, whatever the alias
    load_dataset(str(path))
    assert not new.exists()


# --- real data -----------------------------------------------------------------------------

needs_real = pytest.mark.skipif(
    not REAL_DATA.is_dir(),
    reason=f"real data sets not found at {REAL_DATA} (set {DATA_DIR_ENV})",
)


@needs_real
def test_real_mnist() -> None:
    data = load_dataset("mnist", REAL_DATA)
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.num_classes == 10 and np.bincount(data.y_train).sum() == 60000
    mean, std = channel_stats(data.x_train)
    assert mean == pytest.approx((0.1307,), abs=5e-5) and std == pytest.approx((0.3081,), abs=5e-5)


@needs_real
def test_real_cifar10() -> None:
    data = load_dataset("cifar10", REAL_DATA)
    assert data.x_train.shape == (50000, 32, 32, 3) and data.x_test.shape == (10000, 32, 32, 3)
    assert data.num_classes == 10 and data.classes[0] == "airplane"
    assert np.bincount(data.y_train).tolist() == [5000] * 10
    mean, std = channel_stats(data.x_train)
    assert mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=5e-5)
    assert std == pytest.approx((0.2470, 0.2435, 0.2616), abs=5e-5)
