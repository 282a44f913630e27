"""Image folders in torchvision's ImageFolder layout, decoded once at load time.

    <root>/train/<class>/*.png|jpg|...
    <root>/test/<class>/*.png|jpg|...

Classes are the sorted folder names under train/ (test/ must have the same). Images are
decoded with PIL here and never again: the training loop only sees the resulting arrays. If
every image is grayscale the set has one channel, otherwise all are converted to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.arrays import empty_images, image_set
from trainer.data.base import DataError, ImageSet

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
GRAY_MODES = frozenset({"1", "L", "LA"})
FOLDER_LAYOUT = "expected <root>/train/<class>/<image> and <root>/test/<class>/<image>"


def list_folder(root: Path) -> dict[str, dict[str, list[Path]]]:
    """train/ and test/: class name -> sorted image files. Only the documented layout is
    listed (never a walk below it), so a wrong folder such as / or ~ is refused at once."""
    missing = [part for part in ("train", "test") if not (root / part).is_dir()]
    if missing:
        raise DataError(
            f"{root}: no {' or '.join(f'{m}/' for m in missing)} subfolder; {FOLDER_LAYOUT}"
        )
    try:
        return {part: _list(root / part) for part in ("train", "test")}
    except OSError as err:
        raise DataError(f"{root}: cannot list {err.filename} ({err.strerror})") from None


def read_folder(root: Path, name: str, resize: tuple[int, int] | None) -> ImageSet:
    """Decode train/ and test/ of an image folder into an `ImageSet`."""
    listing = list_folder(root)
    train, test = listing["train"], listing["test"]
    classes = sorted(train)
    if sorted(test) != classes:
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        raise DataError(
            f"{root}: train/ and test/ have different class folders (only in train: "
            f"{only_train or 'none'}; only in test: {only_test or 'none'}); both need the same"
        )
    files = {
        part: [(f, i) for i, c in enumerate(classes) for f in listing[c]]
        for part, listing in (("train", train), ("test", test))
    }
    # Read headers only (PIL decodes lazily) to check sizes and modes before decoding anything.
    headers = {}
    for part_files in files.values():
        for f, _ in part_files:
            try:
                with Image.open(f) as img:
                    headers[f] = (img.size, img.mode)
            except OSError as err:
                raise DataError(f"{f}: not a readable image ({err})") from err
    if resize is None:
        sizes = {}
        for f, (size, _) in headers.items():
            sizes.setdefault(size, f)
            if len(sizes) > 1:
                (w1, h1), f1 = next(iter(sizes.items()))
                w2, h2 = size
                raise DataError(
                    f"{root}: images differ in size: {f1.relative_to(root)} is {h1}x{w1} (HxW) "
                    f"but {f.relative_to(root)} is {h2}x{w2}; make them one size or set "
                    f"data.resize, e.g. [{h1}, {w1}]"
                )
        (w, h), _ = next(iter(sizes.items()))
    else:
        h, w = resize
    gray = all(mode in GRAY_MODES for _, mode in headers.values())
    mode, channels = ("L", 1) if gray else ("RGB", 3)

    arrays = {}
    for part, part_files in files.items():
        x = empty_images((len(part_files), h, w, channels), str(root))
        for i, (f, _) in enumerate(part_files):
            with Image.open(f) as img:
                img = img.convert(mode)
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                x[i] = np.asarray(img).reshape(h, w, channels)
        arrays[f"x_{part}"] = x
        arrays[f"y_{part}"] = np.array([label for _, label in part_files], dtype=np.int64)
    return image_set(name, **arrays, classes=classes, where=str(root))


def _list(part: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for one of train/ or test/."""
    listing = {}
    for d in sorted(p for p in part.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            f
            for f in d.iterdir()
            if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
        if not images:
            raise DataError(f"{d}: class folder holds no images; {FOLDER_LAYOUT}")
        listing[d.name] = images
    if not listing:
        raise DataError(f"{part}: no class subfolders; {FOLDER_LAYOUT}")
    return listing
