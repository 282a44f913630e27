"""`load_dataset`: one entry point for every accepted source, with an on-disk cache.

Decoding is the slow part of loading (CIFAR-10's compressed .npz takes 1.7 s to inflate, an
image folder far longer), and every trial process of a study loads the same set. So the
decoded arrays are written once as plain .npy files and later loads memory-map them: near
instant, and the page cache shares one copy between all worker processes. The cache key is
the source's resolved paths, sizes and modification times plus `resize`, so a changed file
is decoded afresh. Set SEARCH_CACHE_DIR to move the cache, or to an empty string to turn
it off; by default it lives in ~/.cache/cnn-ablation-search/data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np

from trainer.data.arrays import read_npz, resize_images
from trainer.data.base import DataError, ImageSet
from trainer.data.folder import list_folder, read_folder
from trainer.data.standard import (
    DIGITS_TEST_SEED,
    STANDARD,
    load_digits,
    load_standard,
    standard_inputs,
)

DATA_DIR_ENV = "SEARCH_DATA_DIR"
CACHE_DIR_ENV = "SEARCH_CACHE_DIR"
# The names these had before they took the project's SEARCH_ prefix; still read, and a
# variable set under its new name wins.
ENV_ALIASES = {DATA_DIR_ENV: "ABLATION_DATA_DIR", CACHE_DIR_ENV: "ABLATION_CACHE_DIR"}
CACHE_VERSION = 1  # bump when a loader's output for the same files changes
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

ACCEPTED = (
    f"accepted: digits, {', '.join(STANDARD)} (from --data-dir), a .npz file, or a folder "
    "<root>/train/<class>/<image> (and test/)"
)


def read_env(name: str) -> str | None:
    """The variable `name` (DATA_DIR_ENV or CACHE_DIR_ENV) if set, even empty, else its
    older alias, else None."""
    if name in os.environ:
        return os.environ[name]
    return os.environ.get(ENV_ALIASES[name])


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: `data_dir` if given, else $SEARCH_DATA_DIR, else ./data."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(read_env(DATA_DIR_ENV) or "data").expanduser()


def load_dataset(
    source: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    resize: tuple[int, int] | None = None,
) -> ImageSet:
    """Load a whole data set as uint8 NHWC arrays; see ACCEPTED for what `source` may be.

    Only `download=True` lets torchvision reach the network. `resize=(H, W)` resizes every
    image (required for image folders of mixed sizes).
    """
    if resize is not None:
        if len(resize) != 2 or not all(isinstance(v, int) and v > 0 for v in resize):
            raise DataError(f"resize must be two positive integers (H, W), got {resize!r}")
        resize = (int(resize[0]), int(resize[1]))
    root = resolve_data_dir(data_dir)
    name = source.strip().lower()
    if name == "digits":
        # Importing scikit-learn takes ~1.5 s; its version stands in for the file it ships.
        stamp = ["scikit-learn", version("scikit-learn"), DIGITS_TEST_SEED]
        return _cached(name, stamp, resize, lambda: _resized(load_digits(), resize))
    if name in STANDARD:
        spec = STANDARD[name]
        if download:
            root.mkdir(parents=True, exist_ok=True)
            for train in (True, False):
                spec.open(root, train=train, download=True)
        stamp = _files_stamp(standard_inputs(spec, root))
        return _cached(name, stamp, resize, lambda: _resized(load_standard(spec, root), resize))

    try:
        path = Path(source).expanduser()
    except RuntimeError:  # ~user of an unknown user
        raise DataError(f"data set path {source[:80]!r}: no such home folder; {ACCEPTED}") from None
    if not path.exists() and not path.is_absolute() and (root / path).exists():
        path = root / path
    if path.is_file() and path.suffix.lower() == ".npz":
        return _cached(
            path.stem,
            _files_stamp([path]),
            resize,
            lambda: _resized(read_npz(path, path.stem), resize),
        )
    if path.is_dir():
        files = [f for part in list_folder(path).values() for fs in part.values() for f in fs]
        return _cached(
            path.name, _files_stamp(files), resize, lambda: read_folder(path, path.name, resize)
        )
    if path.is_file():
        raise DataError(f"{str(path)[:80]} is a file but not a .npz; {ACCEPTED}")
    if path.exists():
        raise DataError(f"{str(path)[:80]} is neither a file nor a folder; {ACCEPTED}")
    if path.suffix or len(path.parts) > 1:
        raise DataError(
            f"data set path {source[:80]!r} does not exist (nor in the --data-dir folder); "
            f"{ACCEPTED}"
        )
    raise DataError(f"unknown data set {source[:80]!r}; {ACCEPTED}")


def _resized(data: ImageSet, resize: tuple[int, int] | None) -> ImageSet:
    if resize is None:
        return data
    return ImageSet(
        data.name,
        resize_images(data.x_train, resize, data.name),
        data.y_train,
        resize_images(data.x_test, resize, data.name),
        data.y_test,
        data.classes,
    )


def _cache_dir() -> Path | None:
    configured = read_env(CACHE_DIR_ENV)
    if configured is not None:
        return Path(configured).expanduser() if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnn-ablation-search" / "data"


def _files_stamp(paths: list[Path]) -> list[tuple[str, int, int]]:
    """What identifies the content of these files cheaply: path, size, modification time."""
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _cached(
    name: str,
    stamp: Sequence[object],
    resize: tuple[int, int] | None,
    build: Callable[[], ImageSet],
) -> ImageSet:
    """`build()`'s result, memory-mapped from the cache when `stamp` was seen before.

    Arrays are read-only either way, so code never depends on whether the cache was hit.
    """
    cache = _cache_dir()
    if cache is None:
        return _frozen(build())
    key = json.dumps([CACHE_VERSION, name, stamp, resize])
    entry = cache / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if (entry / "meta.json").is_file():
        meta = json.loads((entry / "meta.json").read_text())
        arrays = {k: np.load(entry / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
        return ImageSet(meta["name"], **arrays, classes=tuple(meta["classes"]))
    data = _frozen(build())
    try:
        _write(cache, entry, data)
    except OSError as err:  # a read-only home still loads, only slower next time
        warnings.warn(f"could not cache {name} in {cache}: {err}", stacklevel=3)
    return data


def _write(cache: Path, entry: Path, data: ImageSet) -> None:
    """Write the entry in a private folder and rename it into place, so concurrent trial
    processes never see a half-written entry (meta.json is the completeness marker)."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".tmp-"))
    try:
        for k in _ARRAYS:
            np.save(tmp / f"{k}.npy", getattr(data, k))
        (tmp / "meta.json").write_text(json.dumps({"name": data.name, "classes": data.classes}))
        try:
            tmp.rename(entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # not merely another process winning
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _frozen(data: ImageSet) -> ImageSet:
    for k in _ARRAYS:
        getattr(data, k).flags.writeable = False
    return data
