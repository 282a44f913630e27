"""Named points where a test can make `search` die as a crash would, to prove that a study
survives a kill anywhere. `SEARCH_FAILPOINT=NAME` (or `NAME:N`, the N-th time) sends this
process SIGKILL at that point: no cleanup, no exit handler runs, as with `kill -9`."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SEARCH_FAILPOINT"
_hits: Counter[str] = Counter()


def reached(name: str) -> None:
    wanted, _, count = os.environ.get(ENV, "").partition(":")
    if wanted != name:
        return
    _hits[name] += 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
