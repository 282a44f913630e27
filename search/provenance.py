"""Where a result came from: code version, library versions, machine, data split and space.

Recorded in the study when it first runs (so a report made later, elsewhere, still says what
the trials ran with) and again when a report is made. Fingerprints are SHA-256 digests, cut
to 16 hex digits: enough to tell two splits or two spaces apart, short enough to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch

from trainer.data import Splits

ATTR = "provenance"
PACKAGE = "cnn-ablation-search"
ROOT = Path(__file__).resolve().parent.parent  # holds the three packages below
SOURCES = ("search", "spaces", "trainer")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    """The output of a git command run in this package's checkout."""
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def git_commit() -> str:
    """The commit of the code running now, with `+dirty` when files differ from it."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def code_fingerprint(root: Path = ROOT) -> str:
    """The tool's source (Python files and presets, with their paths) as it runs now. It
    names the code where git cannot: a copy without `.git` or with a stale one (the GPU
    machine's), or uncommitted changes; equal fingerprints mean the same code."""
    files = sorted(
        path
        for package in SOURCES
        for path in (root / package).rglob("*")
        if path.suffix in (".py", ".yaml") and path.is_file()
    )
    return digest([p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() for p in files])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    """`cpu: <model>` or `cuda: <GPU name>`, as the report prints it."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()}"


def digest(chunks: list[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "little"))  # lengths too: a|bc differs from ab|c
        h.update(chunk)
    return h.hexdigest()[:16]


def split_fingerprint(splits: Splits) -> str:
    """The training and validation images and labels exactly as trials see them."""
    arrays = (splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    return digest([a.tobytes() for a in arrays])


def space_hash(space_source: dict[str, Any]) -> str:
    """The space file's content, independent of key order and formatting."""
    return digest([json.dumps(space_source, sort_keys=True, default=str).encode()])


def environment() -> dict[str, Any]:
    """What the code and machine are, now."""
    cuda = torch.cuda.is_available()
    return {
        "tool": f"{PACKAGE} {_version(PACKAGE)}",
        "commit": git_commit(),
        "code": code_fingerprint(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": _version("optuna"),
        "ray": _version("ray"),
        "device": device_name("cuda" if cuda else "cpu"),
        "cpu_cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def record(study: optuna.Study, splits: Splits) -> None:
    """Store the run's provenance in the study, once: at its first run."""
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, {**environment(), "split": split_fingerprint(splits)})
