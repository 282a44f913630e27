"""`drivers.parse`, the one reader of a driver's `host:pid`, and `drivers.alive`, which
judges only a driver of this host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from search import drivers

HERE = socket.gethostname()


def test_a_driver_id_names_this_process_and_parses_back() -> None:
    me = drivers.driver_id()
    assert drivers.parse(me) == (HERE, os.getpid())
    assert drivers.host_of(me) == HERE
    assert drivers.alive(me)


def test_good_and_malformed_names() -> None:
    assert drivers.parse("gpu-box-1:4242") == ("gpu-box-1", 4242)
    assert drivers.parse("fe80::1:77") == ("fe80::1", 77)  # the pid follows the last ':'
    assert drivers.parse("gpu-box-1:") == ("gpu-box-1", None)
    assert drivers.parse("gpu-box-1:12a") == ("gpu-box-1", None)
    assert drivers.parse("gpu-box-1:-3") == ("gpu-box-1", None)
    assert drivers.parse("4242") == ("", 4242)
    assert drivers.parse("") == ("", None)
    assert drivers.host_of("") == drivers.host_of("?") == drivers.host_of(":5") == "?"


@given(st.text(), st.integers(min_value=0, max_value=2**64))
def test_host_and_pid_round_trip(host: str, pid: int) -> None:
    assert drivers.parse(f"{host}:{pid}") == (host, pid)


@given(st.text())
def test_any_text_parses_into_a_host_and_maybe_a_pid(text: str) -> None:
    host, pid = drivers.parse(text)
    assert text.startswith(host) and (pid is None or pid >= 0)
    assert isinstance(drivers.alive(text), bool)  # never raises, whatever the text


@given(st.integers(min_value=0, max_value=2**64))
def test_another_hosts_driver_is_never_judged_here(pid: int) -> None:
    assert drivers.alive(f"not-{HERE}:{pid}")


def test_a_driver_of_this_host_whose_process_ended_is_dead() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert not drivers.alive(f"{HERE}:{ended.stdout.strip()}")
    assert not drivers.alive(f"{HERE}:999999999")  # no such pid
    assert not drivers.alive(f"{HERE}:{2**64}")  # no such pid at all
    assert not drivers.alive(f"{HERE}:not-a-pid")
    assert drivers.alive("")  # no driver recorded: the heartbeat judges
