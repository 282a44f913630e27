"""Study storage: opening the Optuna storage a study lives in, by URL or journal file path.

The default, an SQLite file under runs/, is the only location created; $SEARCH_STORAGE
names another without putting its password in shell history or process lists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna

from search.errors import UsageError, mask_url

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
STORAGE_ENV = "SEARCH_STORAGE"  # keeps a password out of shell history and process lists


def open_storage(url: str | None, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Any Optuna RDB URL (sqlite, postgresql, mysql) or a journal file path (*.log, *.journal).

    The default, an SQLite file under runs/, is the only location created here; a
    storage the user names must already be reachable. With `create=False` (commands that
    only read) a missing SQLite or journal file is an error, never created. Messages show
    the URL with its password masked. Without a URL, $SEARCH_STORAGE names it.
    """
    url = url or os.environ.get(STORAGE_ENV) or None
    if url is None:
        if create:
            Path("runs").mkdir(exist_ok=True)
        url = DEFAULT_STORAGE
    local = "://" not in url or url.startswith("sqlite:///")  # a file on this machine
    if not create and local and not Path(url.removeprefix("sqlite:///")).is_file():
        raise UsageError(
            f"no study storage {url[:100]!r}: the file does not exist, so it holds no studies "
            "(name the storage of your studies with --storage)"
        )
    try:
        if not create and not _holds_studies(url):
            raise ValueError("it holds no studies")
        if "://" in url:
            return _rdb_storage(url)
        path = Path(url)
        if path.suffix not in (".log", ".journal"):
            raise ValueError("not a URL, and not a journal file ending in .log or .journal")
        if not path.parent.is_dir():
            raise ValueError(f"directory {path.parent} does not exist")
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as err:  # SQLAlchemy and drivers raise many types; all mean the same here
        reason = str(err).splitlines()[0][:90] if str(err) else type(err).__name__
        raise UsageError(
            mask_url(
                f"cannot open storage {url[:80]!r}: {reason}; accepted: an Optuna RDB URL "
                f"({DEFAULT_STORAGE}, postgresql://...) or a .log or .journal file"
            )
        ) from None


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage, creating its tables if need be. Two drivers started together on
    an empty database race to create them, and the loser's CREATE fails on a name the winner
    just took; the tables then exist, so trying again opens them."""
    import sqlalchemy.exc

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * 2**attempt)
    return optuna.storages.RDBStorage(url)


def _holds_studies(url: str) -> bool:
    """Whether the storage exists and has Optuna's tables, looked at without writing."""
    if "://" not in url:
        return Path(url).is_file()
    import sqlalchemy

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False  # connecting would create the file
    engine = sqlalchemy.create_engine(url)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()
