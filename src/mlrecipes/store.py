"""The tracking store: which one a command uses, and the embedded SQLite store under concurrency.

Which store: one rule for every command (store.tracking_uri): the URI it was given, else
$MLFLOW_TRACKING_URI, else `sqlite:///<repo>/mlflow.db`; a relative `sqlite:///rel.db` means the
directory the command was started from (`mlflow run` starts train.py in the project's directory,
so the launcher hands it the absolute form). A read-only command (leaderboard, history) checks the
store exists first (require_store): MLflow would create an empty SQLite store rather than say so.
This module is the only place that parses `sqlite:///` URIs.

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
import os
from contextlib import contextmanager
from pathlib import Path

from mlrecipes.errors import UserError
from mlrecipes.paths import DEFAULT_TRACKING_URI

SQLITE = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute `sqlite:////...` URI, else None."""
    if not uri.startswith(SQLITE):
        return None
    path = uri[len(SQLITE):].partition("?")[0]
    return Path(path) if path.startswith("/") else None


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """`sqlite:///rel.db` -> `sqlite:////<base>/rel.db`; every other URI is returned as is."""
    if not uri.startswith(SQLITE):
        return uri
    path, sep, query = uri[len(SQLITE):].partition("?")
    if not path or path == ":memory:" or path.startswith("/"):
        return uri
    return f"{SQLITE}{(base / path).resolve()}{sep}{query}"


def tracking_uri(given: str | None = None, base: Path | None = None) -> str:
    """The store a command uses: `given`, else $MLFLOW_TRACKING_URI, else the repository's
    `mlflow.db`; a relative SQLite path is resolved from `base` (default: the current directory)."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    return absolute_tracking_uri(uri, Path.cwd() if base is None else base)


def require_store(uri: str) -> str:
    """`uri`, when a read-only command may open it: an SQLite store whose file is missing is a
    UserError (opening it would create a new, empty store and report nothing in it)."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise UserError(f"no MLflow store at {db}: pass --tracking-uri or set MLFLOW_TRACKING_URI to the "
                        "store your runs were logged to (a run creates the default one, e.g. `make run`)")
    return uri


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
