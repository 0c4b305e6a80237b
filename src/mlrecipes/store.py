"""The embedded SQLite tracking store when several launches open it at once.

What MLflow 3.17 already does for SQLite: every session sets `PRAGMA busy_timeout = 20000` (a
writer waits up to 20 s for another's lock instead of failing with "database is locked"), and
creating the engine is retried. What it does not: its tracking and registry stores create a new
database's tables (`_initialize_tables`: create_all + alembic migrations) with no lock (only its
jobs and workspace stores take `_safe_initialize_tables`' file lock). Two processes opening a
brand-new file at once both migrate it and one fails ("table _alembic_tmp_... already exists"),
leaving the store half-migrated. So the launcher opens the store under an flock of its own.

The registry's gate (read the champion, register, move the alias) is three calls; two runs
finishing together could both read the old champion and the worse one take the alias last. On
SQLite the gate, and the promote / rollback commands, run under a second flock; a tracking server
serializes nothing for us.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

_SQLITE = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute `sqlite:////...` URI, else None."""
    if not uri.startswith(_SQLITE):
        return None
    path = uri[len(_SQLITE):].partition("?")[0]
    return Path(path) if path.startswith("/") else None


@contextmanager
def store_lock(uri: str, purpose: str):
    """An flock on `<db>.<purpose>-lock` beside an SQLite store; for other URIs, nothing.
    flock: the kernel drops it when its holder dies, even on SIGKILL."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f"{db.name}.{purpose}-lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def store_init_lock(uri: str):
    """Held while opening the store: MlflowClient(uri) creates the tables of a new file."""
    return store_lock(uri, "init")
