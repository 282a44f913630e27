"""Shared fixtures: running the installed `search` command as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_search(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`search ARGS` in a fresh process, from `cwd`, with its output captured; `env` adds to
    (or overrides) this process's environment, e.g. SEARCH_FAILPOINT."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
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


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the session (see tests/pg_server.py)."""
    import pg_server

    bin_dir = pg_server.find_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not installed; apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
    server = pg_server.Server(bin_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A fresh database on the private server, as a SQLAlchemy URL with its password."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return postgres_server.create_database(name)
