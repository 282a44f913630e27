"""Heartbeats: how any driver, on any host, tells a live trial from one whose driver died.

A driver stamps each trial it runs with the wall-clock time (user attribute `heartbeat`,
`search.ledger.HEARTBEAT`) when it asks for it and every `interval(grace)` seconds after, in
whatever storage the study lives in. Optuna's own RDB heartbeat runs only inside
`Study.optimize` and not for journal files, so a user attribute is the one mechanism that
works for every storage. A RUNNING trial whose last stamp is older than the study's grace
period belongs to a driver that died or hung (`search.ledger.is_live`): it is not counted
towards the target, and the next driver to look, on any host, records it as interrupted.
The hosts' clocks must agree to well within the grace period. This module holds the thread
that beats; the ledger reads and writes the stamps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import optuna

from search import ledger
from search.errors import mask_url

log = logging.getLogger(__name__)


def interval(grace: float) -> float:
    """Seconds between stamps: four beats per grace period, so one late beat is harmless."""
    return grace / 4


class Heartbeat:
    """A daemon thread that stamps this driver's live trials and, each beat, lets `reap`
    fail the trials of dead drivers. Storage errors are logged, never fatal: a missed beat
    only brings the grace period closer."""

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        grace: float,
        live: Callable[[], Iterable[int]],
        reap: Callable[[], object],
    ):
        self.storage, self.grace, self.live, self.reap = storage, grace, live, reap
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(interval(self.grace)):
            try:
                ledger.stamp(self.storage, list(self.live()))
                self.reap()
            except Exception as err:  # a storage hiccup must not end the heartbeat
                log.warning("heartbeat: %s", mask_url(str(err)) or type(err).__name__)
