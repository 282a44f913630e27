"""Processes by inherited environment: every process a test starts, and every process those
start (Ray's raylet, workers and agents), carries the test's tag in its environment, so a
test finds exactly its own processes, never another user's Ray on the same machine."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from pathlib import Path

TAG = "SEARCH_TEST_TAG"


def new_tag() -> str:
    return uuid.uuid4().hex


def tagged(tag: str, name: str = TAG) -> list[int]:
    """Live processes whose environment holds name=tag (zombies already reaped or not)."""
    needle = f"{name}={tag}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return found


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        out.append(f"{pid}: {cmd[:120]}")
    return out


def kill_tagged(tag: str, name: str = TAG) -> None:
    for pid in tagged(tag, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
