"""The registry verbs of `mlrecipes` (promote, rollback, history): run one, print its result.

Every verb needs models already registered in the store, so an SQLite store that does not exist
is an error, never a new empty store.
"""

from __future__ import annotations

import sys

from mlrecipes.errors import EXIT_USER_ERROR, UserError, one_line, store_see
from mlrecipes.registry.audit import describe, history, render_history
from mlrecipes.registry.moves import promote, require_reason, rollback
from mlrecipes.store import require_store


def command(verb: str, uri: str, *, model: str, version: str | None = None, to: str | None = None,
            alias: str = "champion", force: bool = False, reason: str | None = None, command: str) -> int:
    """Run one verb (promote, rollback, history) on the store `uri` and print its result; the exit
    status. A user's mistake is one `error:` line and EXIT_USER_ERROR. `command`: the command line
    as the user typed it, recorded with a move."""
    import logging

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # A new SQLite store announces its table creation on stderr: keep stderr for our one line.
    for noisy in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if verb != "history":
            require_reason(force, reason)  # before touching the registry
        client = MlflowClient(require_store(uri))
        if verb == "promote":
            print(describe(promote(client, model, version, alias=alias, force=force, reason=reason, command=command)))
        elif verb == "rollback":
            print(describe(rollback(client, model, to, alias=alias, force=force, reason=reason, command=command)))
        else:
            moves = history(client, model, alias)
            print(render_history(moves) if moves else f"{model}: @{alias} has never moved")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except MlflowException as exc:
        print(f"error: tracking store {uri}: {one_line(exc.message)}" + store_see(exc.message),
              file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0
