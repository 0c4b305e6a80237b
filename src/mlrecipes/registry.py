"""Register + gate, and every later move of the champion alias, with the registry as audit trail.

    python -m mlrecipes.registry promote <model> <version> [--force --reason TEXT]
    python -m mlrecipes.registry rollback <model> [--to VERSION] [--force --reason TEXT]
    python -m mlrecipes.registry history <model>

Every good run registers a version; the gate moves the alias (`champion`) only when the
candidate's metric reaches the threshold and is not worse than the current holder's, in the
gate's direction. Every move of the alias (the gate's, a promotion, a rollback) is one tag on the
version it moved to, `audit.<alias>.<UTC stamp>`, whose value is a JSON record: who (OS user,
MLflow user when known), when (UTC ISO), from which version, why, which command. `history`
reads those tags back across the versions, newest first.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import math
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlrecipes.errors import EXIT_USER_ERROR, UserError, one_line, see, store_see
from mlrecipes.store import store_lock

DIRECTIONS = ("maximize", "minimize")
AUDIT_PREFIX = "audit."
DEFAULT_GATE_FILE = Path(__file__).resolve().parents[2] / "conf" / "gate" / "default.yaml"
CLI = "python -m mlrecipes.registry"


# --------------------------------------------------------------------------- the gate


def baseline_metric(metric: str) -> str | None:
    """The name under which a run logs `metric` of a model that knows only the training target
    (evaluate.baseline: test_accuracy -> test_baseline_accuracy); None for a non-test metric."""
    return metric.replace("test_", "test_baseline_", 1) if metric.startswith("test_") else None


@dataclass(frozen=True)
class Gate:
    metric: str
    direction: str
    threshold: float | None  # None: no absolute bar, only "not worse than the champion"
    alias: str = "champion"
    promote: bool = True
    beat_baseline: bool = True  # also better than test_baseline_<metric> (evaluate.baseline), when logged

    @classmethod
    def of(cls, gate) -> Gate:
        """From the composed `cfg.gate` (or any mapping, e.g. version tags): checked, typed."""
        get = gate.get if hasattr(gate, "get") else lambda key, default=None: getattr(gate, key, default)
        metric, direction = get("metric"), str(get("direction", "maximize")).lower()
        if not metric:
            raise UserError("gate.metric is empty: name the metric the gate compares, e.g. gate.metric=test_accuracy")
        if direction not in DIRECTIONS:
            raise UserError(f"gate.direction must be maximize or minimize, got {get('direction')!r}")
        threshold = get("threshold")
        if threshold is not None and str(threshold).lower() not in ("none", "null"):
            try:
                threshold = float(threshold)
            except (TypeError, ValueError):
                raise UserError(f"gate.threshold must be a number or null, got {get('threshold')!r}") from None
        else:
            threshold = None
        switches = {}
        for key in ("promote", "beat_baseline"):
            value = get(key, True)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise UserError(f"gate.{key} must be true or false, got {value!r}")
            switches[key] = value
        return cls(str(metric), direction, threshold, str(get("alias", "champion")), **switches)

    @property
    def baseline_metric(self) -> str | None:
        return baseline_metric(self.metric)

    def worse(self, a: float, b: float) -> bool:
        """Is `a` worse than `b` in this gate's direction?"""
        return a < b if self.direction == "maximize" else a > b


def _pair(a: float, b: float) -> tuple[str, str]:
    """Two numbers with just enough digits to tell them apart (4 significant at least)."""
    for digits in range(4, 12):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb or a == b:
            return sa, sb
    return repr(a), repr(b)


def decide(candidate: float, gate: Gate, champion: float | None, basis: str = "",
           baseline: float | None = None) -> tuple[bool, str]:
    """Pass when the candidate reaches the threshold, beats the baseline and is not worse than the
    champion.

    `basis`: how the champion's value was obtained (champion_value), added to a reason that uses it.
    `baseline`: the same metric of a model that knows only the training target, on the same rows."""
    m = gate.metric
    if not math.isfinite(candidate):
        return False, f"{m} is {candidate}: not a number the gate can compare"
    reached = None  # no threshold: only the champion bars
    if gate.threshold is not None:
        c, t = _pair(candidate, gate.threshold)
        if gate.worse(candidate, gate.threshold):
            side = "below" if gate.direction == "maximize" else "above"
            return False, f"{m} {c} {side} the gate threshold {t}"
        reached = f"reaches the threshold {t}"
    if gate.beat_baseline and baseline is not None and not gate.worse(baseline, candidate):
        c, b = _pair(candidate, baseline)
        return False, (f"{m} {c} is no better than the baseline's {b} (a model that knows only the training "
                       "target: its most frequent class, or its mean)")
    if champion is None:
        return True, f"{m} {candidate:.4g} {reached or 'with no threshold set'}; no champion yet"
    c, h = _pair(candidate, champion)
    if gate.worse(candidate, champion):
        return False, f"{m} {c} worse than the champion's {h}{basis}"
    return True, f"{m} {c} {reached + ' and is' if reached else 'is'} not worse than the champion's {h}{basis}"


def _client(tracking_uri: str | None = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


def holder(client, name: str, alias: str):
    """The model version holding `alias`, or None (no such model or no alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _get_run(client, run_id: str | None):
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:  # the run is gone
        return None


def test_digest(run) -> str | None:
    """The digest of the rows a run (an MLflow Run, or None) was tested on: its dataset input in
    context `evaluation`."""
    for item in (run.inputs.dataset_inputs if run is not None and run.inputs else []):
        if any(t.key == "mlflow.data.context" and t.value == "evaluation" for t in item.tags):
            return item.dataset.digest
    return None


def unseen_by(champion, candidate) -> str | None:
    """None when every test row of `candidate` (a Run) is later than every row `champion` (a Run)
    trained or validated on; otherwise why that is not known. Only then is re-scoring the champion
    on them fair: on rows it trained on it would look better than it is. Known by time only: both
    runs order their rows by the same `data.time_column`, whose range per split they log."""
    import numpy as np

    mine, theirs = candidate.data.params, champion.data.params
    column = mine.get("data.time_column")
    first = mine.get("data.split.test.time_min")
    seen = [theirs.get(f"data.split.{part}.time_max") for part in ("train", "validation")]
    if column in (None, "None") or theirs.get("data.time_column") != column or first is None or None in seen:
        return "no common data.time_column shows that this run's test rows are new to it"
    last = max(seen, key=np.datetime64)
    if np.datetime64(first) <= np.datetime64(last):
        return f"this run's test rows start at {first}, before the end of the rows it trained on, {last}"
    return None


def champion_value(client, name: str, current, metric: str, candidate,
                   rescore: Callable[[str], dict] | None) -> tuple[float | None, str, bool]:
    """The champion's `metric` to compare the candidate with, how it was obtained, and whether it
    was re-scored on the candidate's test rows.

    Its own run's value when it was tested on the candidate's rows (the same test digest; the
    candidate's run: `candidate`). Otherwise (a rolling window, a new day of ticks) two test
    accuracies of two different windows say nothing about which model is better: the champion is
    re-scored on the candidate's test rows, when they are all new to it (unseen_by). If they may
    not be, or it cannot score them (a column it needs is gone), its own value stands, with a
    warning and a reason that say why.
    """
    champion = _get_run(client, current.run_id) if current is not None else None
    logged = champion.data.metrics.get(metric) if champion is not None else None
    if champion is None or rescore is None or test_digest(champion) == test_digest(candidate):
        return logged, "", False
    why = unseen_by(champion, candidate)
    if why is None:
        try:
            value = float(rescore(f"models:/{name}/{current.version}")[metric])
        except Exception as exc:  # noqa: BLE001 - any failure to score leaves the logged value
            why = f"it cannot score this run's: {one_line(str(exc)) or type(exc).__name__}"
        else:
            was = f"; its own run logged {logged:.4g}" if logged is not None else ""
            return value, f" (version {current.version} re-scored on this run's test rows{was})", True
    print(f"warning: the gate compares with champion version {current.version}'s value on its own test rows "
          f"({why}){see('the-gate-cannot-re-score-the-champion')}", file=sys.stderr, flush=True)
    return logged, f" (each on its own run's test rows: {why})", False


def register_and_gate(model_uri: str, name: str, run_id: str, metrics: dict, gate,
                      rescore: Callable[[str], dict] | None = None) -> dict:
    """Register `model_uri` as a new version of `name`, apply the gate, tag run and version.

    `metrics`: the run's evaluation results; the gate picks `gate.metric` from them. A gate that
    cannot be applied (unknown metric, bad direction) is a UserError before anything is registered.
    `rescore(model_uri) -> metrics`: the same evaluation of another model on this run's test rows,
    for a champion that was tested on other rows (see champion_value).
    """
    import mlflow

    gate = Gate.of(gate)
    if gate.metric not in metrics:
        raise UserError(f"gate metric {gate.metric!r} is not among this run's metrics "
                        f"({', '.join(sorted(metrics))}): set gate.metric to one of them"
                        + see("the-gate-metric-is-not-among-the-runs-metrics"))
    score = float(metrics[gate.metric])
    client = mlflow.MlflowClient()
    # Re-scoring a champion takes seconds: done before the lock, and again inside it only when
    # another run moved the alias meanwhile.
    judged, candidate = {}, _get_run(client, run_id) if rescore else None

    def judge(current) -> tuple[float | None, str, bool]:
        if current is None:
            return None, "", False
        if current.version not in judged:
            judged[current.version] = champion_value(client, name, current, gate.metric, candidate, rescore)
        return judged[current.version]

    judge(holder(client, name, gate.alias))
    # Concurrent runs on one store: read the champion, register and move the alias as one step.
    with store_lock(mlflow.get_tracking_uri(), "registry"):
        current = holder(client, name, gate.alias)
        champion, basis, rescored = judge(current)
        version = str(mlflow.register_model(model_uri, name).version)
        passed, reason = decide(score, gate, champion, basis, metrics.get(gate.baseline_metric))
        if passed and gate.promote:
            decision = "promoted"
        elif passed:
            decision = "not promoted (promote=false)"
            reason = f"promote=false: registered only; the gate would have promoted it ({reason})"
        else:
            decision = "rejected"
        tags = {"gate.decision": decision, "gate.reason": reason, "gate.passed": str(passed).lower(),
                "gate.metric": gate.metric, "gate.direction": gate.direction,
                "gate.threshold": repr(gate.threshold), "gate.beat_baseline": str(gate.beat_baseline).lower(),
                gate.metric: repr(score)}
        if champion is not None:  # what it was compared with: `promote` reuses a re-scored value
            tags.update({"gate.champion.version": str(current.version), "gate.champion.value": repr(champion),
                         "gate.champion.rescored": str(rescored).lower()})
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if decision == "promoted":
            via = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
            dag = os.environ.get("AIRFLOW_CTX_DAG_ID")
            command = f"gate of run {run_id}" + (f" (Airflow {dag} {via})" if via else "")
            move_alias(client, name, gate.alias, version, action="gate", command=command, reason=reason)
    client.set_tag(run_id, "gate.decision", decision)
    client.set_tag(run_id, "gate.reason", reason)
    client.set_tag(run_id, "registry.model", f"{name}/{version}")
    print(f"registered {name} version {version}: {decision} ({reason})")
    return {"version": version, "promoted": decision == "promoted", "passed": passed, "reason": reason}


# --------------------------------------------------------------------------- the audit trail


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


def model_versions(client, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"no registered model {name!r} in {client.tracking_uri}") from None
        raise
    escaped = name.replace("'", "\\'")
    return client.search_model_versions(f"name='{escaped}'")


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


def _version(client, name: str, version: str, versions: list):
    by_number = {str(v.version): v for v in versions}
    if str(version) not in by_number:
        known = ", ".join(sorted(by_number, key=int)) or "none"
        raise UserError(f"{name} has no version {version}; versions: {known}")
    return by_number[str(version)]


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


def version_gate(client, version) -> Gate:
    """The gate a version was registered under (its tags), else its run's params, else the default."""
    tags = version.tags or {}
    if "gate.metric" in tags:
        return Gate.of({k[len("gate."):]: v for k, v in tags.items() if k.startswith("gate.")
                        and k[len("gate."):] in ("metric", "direction", "threshold", "beat_baseline")})
    from mlflow.exceptions import MlflowException

    try:
        params = client.get_run(version.run_id).data.params if version.run_id else {}
    except MlflowException:
        params = {}
    if "gate.metric" in params:
        if "gate.threshold" not in params and "gate.min_accuracy" in params:
            params = {**params, "gate.threshold": params["gate.min_accuracy"]}  # runs before the rename
        return Gate.of({k[len("gate."):]: v for k, v in params.items() if k.startswith("gate.")
                        and k[len("gate."):] in ("metric", "direction", "threshold", "beat_baseline")})
    import yaml

    return Gate.of(yaml.safe_load(DEFAULT_GATE_FILE.read_text()))


def _require_reason(force: bool, reason: str | None) -> None:
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


def champion_for(client, target, target_run, current, metric: str) -> tuple[float | None, str]:
    """The champion's value that `promote` compares `target` (its run: `target_run`) with, and how
    it was obtained.

    No test rows here to re-score the champion on. When target's own gate re-scored this same
    champion on target's test rows (a new window), that value; otherwise the champion's logged
    value, and the verdict says when the two were tested on different rows."""
    if current is None:
        return None, ""
    tags = target.tags or {}
    if tags.get("gate.champion.rescored") == "true" and tags.get("gate.champion.version") == str(current.version):
        return (float(tags["gate.champion.value"]),
                f" (version {current.version} re-scored on this version's test rows by its gate)")
    champion = _get_run(client, current.run_id)
    differ = test_digest(target_run) != test_digest(champion)
    return (champion.data.metrics.get(metric) if champion is not None else None,
            " (each on its own run's test rows, which differ)" if differ else "")


@registry_locked
def promote(client, name: str, version: str, *, alias: str = "champion", force: bool = False,
            reason: str | None = None, command: str = "promote") -> dict:
    """Move `alias` to `version` if it passes the gate against the current holder (or if forced)."""
    _require_reason(force, reason)
    versions = model_versions(client, name)
    target = _version(client, name, version, versions)
    current = holder(client, name, alias)
    if current is not None and str(current.version) == str(target.version):
        raise UserError(f"{name} version {target.version} already holds @{alias}")
    if not force:
        problem = _run_problem(client, target)
        if problem:
            raise UserError(f"refusing to promote {name} version {target.version}: {problem}; "
                            "--force --reason TEXT overrides" + see("a-champion-must-be-rolled-back"))
        gate = version_gate(client, target)
        run = _get_run(client, target.run_id)
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
    _require_reason(force, reason)
    versions = model_versions(client, name)
    current = holder(client, name, alias)
    here = str(current.version) if current else None
    if to is None:
        to = previous_champion(history(client, name, alias, versions), here)
        if to is None:
            raise UserError(f"{name} has no previous champion to roll back to"
                            + (f" (@{alias} is version {here})" if here else f" (no @{alias} yet)")
                            + "; --to VERSION picks one")
    target = _version(client, name, to, versions)
    if str(target.version) == here:
        raise UserError(f"{name} version {target.version} already holds @{alias}")
    problem = _run_problem(client, target) or (None if passed_gate(target, alias) else "it never passed the gate")
    if problem and not force:
        raise UserError(f"refusing to roll {name} back to version {target.version}: {problem}; "
                        "--force --reason TEXT overrides" + see("a-champion-must-be-rolled-back"))
    why = (reason or "").strip() or (f"rolled back from version {here}" if here else "rolled back")
    return move_alias(client, name, alias, target.version, action="rollback", command=command,
                      reason=why, forced=force)


# --------------------------------------------------------------------------- the CLI


def _describe(record: dict) -> str:
    by = record["by"] + (f" (MLflow user {record['mlflow_user']})" if record.get("mlflow_user") else "")
    source = f"version {record['from']}" if record.get("from") else "no holder"
    forced = ", forced" if record.get("forced") else ""
    return (f"@{record['alias']} -> version {record['version']} (from {source}) by {by} at {record['at']}"
            f" [{record['action']}{forced}]: {record['reason']}")


HISTORY_COLUMNS = ("at", "alias", "version", "from", "action", "by", "reason", "command")


def render_history(moves: list[dict]) -> str:
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=CLI, description="Move the champion alias with an audit trail.")
    p.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    import logging

    from mlflow.exceptions import MlflowException

    # A new SQLite store announces its table creation on stderr: keep stderr for our one line.
    for noisy in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        if args.command != "history":
            _require_reason(args.force, args.reason)  # before touching the registry
        client = _client(args.tracking_uri)
        command = f"{CLI} {shlex.join(argv)}"
        if args.command == "promote":
            print(_describe(promote(client, args.model, args.version, alias=args.alias, force=args.force,
                                    reason=args.reason, command=command)))
        elif args.command == "rollback":
            print(_describe(rollback(client, args.model, args.to, alias=args.alias, force=args.force,
                                     reason=args.reason, command=command)))
        else:
            moves = history(client, args.model, args.alias)
            print(render_history(moves) if moves else f"{args.model}: @{args.alias} has never moved")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except MlflowException as exc:
        print(f"error: tracking store {args.tracking_uri or os.environ.get('MLFLOW_TRACKING_URI', '(default)')}: "
              f"{one_line(exc.message)}" + store_see(exc.message), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
