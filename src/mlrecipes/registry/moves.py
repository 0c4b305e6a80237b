"""Moving the alias by hand: promote a version through the gate, roll back to a previous champion.

Both run under the registry lock the gate takes, and move the alias through audit.move_alias, so
every move is recorded. `--force --reason TEXT` skips the checks and records why.
"""

from __future__ import annotations

import functools

from mlrecipes.errors import UserError, see
from mlrecipes.registry.audit import audit_records, history, move_alias, previous_champion
from mlrecipes.registry.gate import champion_for, decide, version_gate
from mlrecipes.registry.versions import get_run, holder, model_versions, version_of
from mlrecipes.store import store_lock


def _run_problem(client, version) -> str | None:
    """Why the version's run cannot back a champion, or None."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return "it has no run"
    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        return f"its run {version.run_id} no longer exists"
    if run.info.lifecycle_stage == "deleted":
        return f"its run {version.run_id} was deleted"
    return None


def passed_gate(version, alias: str = "champion") -> bool:
    """Passed the gate at registration, or was promoted through the gate (not forced) since."""
    tags = version.tags or {}
    if tags.get("gate.passed") == "true" or ("gate.passed" not in tags and tags.get("gate.decision") == "promoted"):
        return True
    return any(r.get("action") in ("gate", "promote") and not r.get("forced") for r in audit_records(tags, alias))


def require_reason(force: bool, reason: str | None) -> None:
    """--force needs a reason: it is what the audit record keeps of a skipped check."""
    if force and not (reason or "").strip():
        raise UserError("--force needs --reason TEXT: the reason is recorded on the version")


def registry_locked(fn):
    """Run fn (read the holder, decide, move the alias) under the registry lock the gate takes, so a
    promote or rollback and a training's gate finishing together cannot interleave (SQLite stores;
    store_lock does nothing for a tracking server)."""
    @functools.wraps(fn)
    def locked(client, *args, **kwargs):
        with store_lock(client.tracking_uri, "registry"):
            return fn(client, *args, **kwargs)

    return locked


@registry_locked
def promote(client, name: str, version: str, *, alias: str = "champion", force: bool = False,
            reason: str | None = None, command: str = "promote") -> dict:
    """Move `alias` to `version` if it passes the gate against the current holder (or if forced)."""
    require_reason(force, reason)
    versions = model_versions(client, name)
    target = version_of(name, version, versions)
    current = holder(client, name, alias)
    if current is not None and str(current.version) == str(target.version):
        raise UserError(f"{name} version {target.version} already holds @{alias}")
    if not force:
        problem = _run_problem(client, target)
        if problem:
            raise UserError(f"refusing to promote {name} version {target.version}: {problem}; "
                            "--force --reason TEXT overrides" + see("a-champion-must-be-rolled-back"))
        gate = version_gate(client, target)
        run = get_run(client, target.run_id)
        metrics = run.data.metrics if run is not None else {}
        score = metrics.get(gate.metric)
        if score is None:
            raise UserError(f"{name} version {target.version} has no {gate.metric} to gate on; "
                            "--force --reason TEXT promotes it anyway")
        held, basis = champion_for(client, target, run, current, gate.metric)
        passed, verdict = decide(score, gate, held, basis, metrics.get(gate.baseline_metric))
        if not passed:
            raise UserError(f"the gate refuses {name} version {target.version}: {verdict}; "
                            "--force --reason TEXT promotes it anyway")
        reason = f"{reason.strip()} ({verdict})" if reason and reason.strip() else verdict
    return move_alias(client, name, alias, target.version, action="promote", command=command,
                      reason=reason.strip(), forced=force)


@registry_locked
def rollback(client, name: str, to: str | None = None, *, alias: str = "champion", force: bool = False,
             reason: str | None = None, command: str = "rollback") -> dict:
    """Move `alias` back to the previous champion (or to version `to`)."""
    require_reason(force, reason)
    versions = model_versions(client, name)
    current = holder(client, name, alias)
    here = str(current.version) if current else None
    if to is None:
        to = previous_champion(history(client, name, alias, versions), here)
        if to is None:
            raise UserError(f"{name} has no previous champion to roll back to"
                            + (f" (@{alias} is version {here})" if here else f" (no @{alias} yet)")
                            + "; --to VERSION picks one")
    target = version_of(name, to, versions)
    if str(target.version) == here:
        raise UserError(f"{name} version {target.version} already holds @{alias}")
    problem = _run_problem(client, target) or (None if passed_gate(target, alias) else "it never passed the gate")
    if problem and not force:
        raise UserError(f"refusing to roll {name} back to version {target.version}: {problem}; "
                        "--force --reason TEXT overrides" + see("a-champion-must-be-rolled-back"))
    why = (reason or "").strip() or (f"rolled back from version {here}" if here else "rolled back")
    return move_alias(client, name, alias, target.version, action="rollback", command=command,
                      reason=why, forced=force)
