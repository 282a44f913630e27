"""Writing a file whole or not at all.

Weights, checkpoints, exports and reports are read by later commands, possibly after a
crash; a reader must never find half a file. Everything is written to a temporary file
beside the target (same file system, so the rename is atomic) and renamed over it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(partial)` on a temporary path next to `path`, then rename it to `path`.

    The temporary name carries the process id, so two processes writing the same target
    never write into one temporary file; on any error the temporary file is removed and
    `path` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
