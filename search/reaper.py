"""No Ray process outlives the `search` that started it.

Ray's own clean-up misses some: after a `kill -9` of the driver, its DashboardAgent and
RuntimeEnvAgent live on with parent PID 1. So before a driver starts a local Ray it marks its
environment (`SEARCH_RAY_OWNER=host:pid`), which every Ray process inherits, and starts a
small watcher in its own session; when the driver ends, however it ends, the watcher kills
every process that carries the driver's mark or holds a file of its Ray session (Ray names
the session directory after the driver's PID; the agents rewrite their command line and,
now and then, the end of their environment). The next driver on the host also reaps what a
dead driver's watcher could not (both killed at once), by the mark alone."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from search import drivers

MARK = "SEARCH_RAY_OWNER"


def _owners() -> dict[int, str]:
    """Processes of this user that carry a driver's mark: pid -> mark."""
    found = {}
    prefix = f"{MARK}=".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # exited meanwhile, or another user's
            for entry in (proc / "environ").read_bytes().split(b"\0"):
                if entry.startswith(prefix):
                    found[int(proc.name)] = entry[len(prefix) :].decode()
    return found


def _dead(owner: str) -> bool:
    """Whether the driver that marked a process is known to have ended: it ran on this host
    and its process is gone or a zombie. A mark whose pid is no number (an environment cut
    short) is nobody's to reap."""
    host, pid = drivers.parse(owner)
    return host == socket.gethostname() and pid is not None and not _running(pid)


def _in_session(pid: int, driver: int) -> bool:
    """Whether process `pid` holds a file of the Ray session that process `driver` started."""
    session = re.compile(rf"/session_[^/]*_{driver}/")
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if session.search(os.readlink(fd)):
                    return True
    return False


def reap(owner: str | None = None, passes: int = 10) -> int:
    """Kill the processes of driver `owner` (its mark, or its Ray session's files), or those
    marked by any dead driver of this host; returns how many. Again until none is left: a
    process may start another as it dies."""
    driver = drivers.parse(owner).pid if owner else None
    killed = 0
    for _ in range(passes):
        marks = _owners()
        doomed = [
            pid for pid, mark in marks.items() if mark == owner or (not owner and _dead(mark))
        ]
        if driver is not None:
            doomed += [
                int(p.name)
                for p in Path("/proc").iterdir()
                if p.name.isdigit()
                and int(p.name) not in marks
                and int(p.name) != os.getpid()
                and _in_session(int(p.name), driver)
            ]
        if not doomed:
            break
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.3)
    return killed


def guard() -> None:
    """Mark this process's future children, reap what dead drivers left, and start the
    watcher that reaps this driver's processes when it ends."""
    if not sys.platform.startswith("linux") or MARK in os.environ:
        return
    reap()
    owner = drivers.driver_id()
    os.environ[MARK] = owner
    env = {k: v for k, v in os.environ.items() if k != MARK}
    subprocess.Popen(
        [sys.executable, "-m", "search.reaper", str(os.getpid()), owner],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a kill of the driver's process group
    )


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent has not asked yet


def _watch(pid: int, owner: str) -> None:
    while _running(pid):
        time.sleep(0.5)
    reap(owner)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), sys.argv[2])
