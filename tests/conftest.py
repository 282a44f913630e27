"""Shared fixtures: running the installed `search` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_search(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`search ARGS` in a fresh process, from `cwd`, with its output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def search(tmp_path: Path):
    """Call `search` from an empty working directory (its default runs/ goes there)."""
    return lambda *args, **kw: run_search(*args, cwd=tmp_path, **kw)
