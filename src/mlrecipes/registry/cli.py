"""The registry's command line: promote, rollback, history.

    python -m mlrecipes.registry promote <model> <version> [--force --reason TEXT]
    python -m mlrecipes.registry rollback <model> [--to VERSION] [--force --reason TEXT]
    python -m mlrecipes.registry history <model>

The store: store.tracking_uri (--tracking-uri, else $MLFLOW_TRACKING_URI, else the repository's
mlflow.db). Every command needs models already registered there, so an SQLite store that does
not exist is an error, never a new empty store.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from mlrecipes.errors import EXIT_USER_ERROR, UserError, one_line, store_see
from mlrecipes.registry.audit import describe, history, render_history
from mlrecipes.registry.moves import promote, require_reason, rollback
from mlrecipes.store import require_store, tracking_uri

CLI = "python -m mlrecipes.registry"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=CLI, description="Move the champion alias with an audit trail.")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db")
    p.add_argument("--alias", default="champion", help="the alias to move (default: champion)")
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("promote", help="move the alias to VERSION if it passes the gate (or --force)")
    pr.add_argument("model")
    pr.add_argument("version")
    rb = sub.add_parser("rollback", help="move the alias back to the previous champion (or --to VERSION)")
    rb.add_argument("model")
    rb.add_argument("--to", metavar="VERSION")
    for cmd in (pr, rb):
        cmd.add_argument("--force", action="store_true", help="skip the gate / eligibility checks (needs --reason)")
        cmd.add_argument("--reason", help="why: recorded on the version")
    hi = sub.add_parser("history", help="every move of the alias, newest first")
    hi.add_argument("model")
    return p


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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    return command(args.command, tracking_uri(args.tracking_uri), model=args.model,
                   version=getattr(args, "version", None), to=getattr(args, "to", None), alias=args.alias,
                   force=getattr(args, "force", False), reason=getattr(args, "reason", None),
                   command=f"{CLI} {shlex.join(argv)}")
