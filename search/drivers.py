"""Drivers: which `search` process runs a trial, and whether it still lives.

A driver is named `host:pid` (`driver_id`), in each trial it runs (user attribute `driver`)
and in the environment of the Ray processes it starts (`search.reaper`). `parse` is the one
reader of such a name; `alive` judges only a driver of this host, the one kind whose
process can be looked at: another host's driver is judged by its heartbeat instead.
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple


class Driver(NamedTuple):
    """A parsed `host:pid`; pid is None when the part after the last ':' is no number."""

    host: str
    pid: int | None


def driver_id() -> str:
    """This process's name as a driver: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse(driver: str) -> Driver:
    """The host and pid of `driver`. The host may hold ':' itself (the pid is what follows
    the last one); a name without ':' has an empty host."""
    host, _, pid = driver.rpartition(":")
    return Driver(host, int(pid) if pid.isdecimal() else None)


def host_of(driver: str) -> str:
    """The host part of `driver`, or '?' for a name without one."""
    return parse(driver).host or "?"


def alive(driver: str) -> bool:
    """False only for a driver of this host whose process is gone (or whose pid is no
    number): another machine's driver, or an empty name, is not ours to judge."""
    host, pid = parse(driver)
    if host != socket.gethostname():
        return True
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; no such pid at all
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
