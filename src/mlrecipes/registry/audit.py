"""The audit trail: every move of an alias is one tag on the version it moved to.

The tag is `audit.<alias>.<UTC stamp>`, its value a JSON record: who (OS user, MLflow user when
known), when (UTC ISO), from which version, why, which command. `history` reads those tags back
across the versions, newest first; `move_alias` is the one place an alias moves, so no move goes
unrecorded.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime

from mlrecipes.registry.versions import holder, model_versions

AUDIT_PREFIX = "audit."
HISTORY_COLUMNS = ("at", "alias", "version", "from", "action", "by", "reason", "command")


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid {os.getuid()}"


def mlflow_user() -> str | None:
    """The user the tracking server knows us as, when we authenticate as one."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or None


def move_alias(client, name: str, alias: str, version: str, *, action: str, command: str,
               reason: str, forced: bool = False) -> dict:
    """Point `alias` at `version` and record the move as a tag on that version."""
    previous = holder(client, name, alias)
    now = datetime.now(UTC)
    record = {
        "alias": alias, "version": str(version), "from": str(previous.version) if previous else None,
        "at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "by": os_user(), "mlflow_user": mlflow_user(),
        "action": action, "command": command, "reason": reason, "forced": forced,
    }
    client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), f"{AUDIT_PREFIX}{alias}.{now:%Y%m%dT%H%M%S%fZ}",
                                 json.dumps(record))
    return record


def audit_records(tags: dict, alias: str) -> list[dict]:
    """The moves of `alias` recorded on one version (tags edited into something else are skipped)."""
    out = []
    for key, value in tags.items():
        if key.startswith(f"{AUDIT_PREFIX}{alias}."):
            try:
                record = json.loads(value)
            except ValueError:
                continue
            if isinstance(record, dict) and {"version", "at", "action"} <= record.keys():
                out.append(record)
    return out


def history(client, name: str, alias: str = "champion", versions: list | None = None) -> list[dict]:
    """Every recorded move of `alias` of model `name`, newest first.

    Versions promoted by the gate before moves were recorded appear once, at their registration
    time, with action `gate` and no `from`.
    """
    moves = []
    for v in versions if versions is not None else model_versions(client, name):
        tags = v.tags or {}
        own = audit_records(tags, alias)
        if tags.get("gate.decision") == "promoted" and not any(r.get("action") == "gate" for r in own):
            at = datetime.fromtimestamp(v.creation_timestamp / 1000, UTC)
            own += [{"alias": alias, "version": str(v.version), "from": None,
                    "at": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                    "by": v.user_id or "?", "mlflow_user": None, "action": "gate",
                    "command": "gate (recorded before the audit trail)",
                    "reason": tags.get("gate.reason", ""), "forced": False}]
        moves += own
    return sorted(moves, key=lambda r: r["at"], reverse=True)


def previous_champion(moves: list[dict], current: str | None) -> str | None:
    """The version that held the alias before `current`, undoing rollbacks as they happened.

    The moves, oldest first, build a stack: a move to a version already on it pops back to it
    (a rollback), any other pushes. So two rollbacks in a row go two champions back.
    """
    current = None if current is None else str(current)
    stack: list[str] = []
    for move in reversed(moves):
        v = move["version"]
        if v in stack:
            del stack[stack.index(v) + 1:]
        else:
            stack.append(v)
    if current in stack:
        del stack[stack.index(current):]
    return stack[-1] if stack else None


def describe(record: dict) -> str:
    """One move, as one line."""
    by = record["by"] + (f" (MLflow user {record['mlflow_user']})" if record.get("mlflow_user") else "")
    source = f"version {record['from']}" if record.get("from") else "no holder"
    forced = ", forced" if record.get("forced") else ""
    return (f"@{record['alias']} -> version {record['version']} (from {source}) by {by} at {record['at']}"
            f" [{record['action']}{forced}]: {record['reason']}")


def render_history(moves: list[dict]) -> str:
    """The moves as a table, one row each, in the order given."""
    def cell(record, key):
        if key == "by" and record.get("mlflow_user"):
            return f"{record['by']} ({record['mlflow_user']})"
        if key == "action" and record.get("forced"):
            return f"{record['action']} (forced)"
        value = record.get(key)
        return "-" if value in (None, "") else str(value)

    cells = [[cell(r, k) for k in HISTORY_COLUMNS] for r in moves]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(HISTORY_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(HISTORY_COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
