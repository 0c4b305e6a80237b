"""The gate: is a candidate good enough to hold the alias, and the register + gate step.

Every good run registers a version; the gate moves the alias (`champion`) only when the
candidate's metric reaches the threshold, beats the baseline and is not worse than the current
holder's, in the gate's direction. `promote` (moves.py) asks the same gate of a version later.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

from mlrecipes.airflow_context import airflow_origin
from mlrecipes.errors import UserError, one_line, see
from mlrecipes.paths import SHARED_CONF
from mlrecipes.registry.audit import move_alias
from mlrecipes.registry.versions import get_run, holder
from mlrecipes.store import store_lock

DIRECTIONS = ("maximize", "minimize")
DEFAULT_GATE_FILE = SHARED_CONF / "gate" / "default.yaml"


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
    champion = get_run(client, current.run_id) if current is not None else None
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
                      rescore: Callable[[str], dict] | None = None, *, context: dict[str, str] | None = None) -> dict:
    """Register `model_uri` as a new version of `name`, apply the gate, tag run and version.

    `metrics`: the run's evaluation results; the gate picks `gate.metric` from them. A gate that
    cannot be applied (unknown metric, bad direction) is a UserError before anything is registered.
    `rescore(model_uri) -> metrics`: the same evaluation of another model on this run's test rows,
    for a champion that was tested on other rows (see champion_value).
    `context`: the caller's Airflow task as run tags (airflow_context.airflow_tags()), named in the
    audit record of a promotion; the registry never reads Airflow's environment itself.
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
    judged, candidate = {}, get_run(client, run_id) if rescore else None

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
            origin = airflow_origin(context or {})
            command = f"gate of run {run_id}" + (f" ({origin})" if origin else "")
            move_alias(client, name, gate.alias, version, action="gate", command=command, reason=reason)
    client.set_tag(run_id, "gate.decision", decision)
    client.set_tag(run_id, "gate.reason", reason)
    client.set_tag(run_id, "registry.model", f"{name}/{version}")
    print(f"registered {name} version {version}: {decision} ({reason})")
    return {"version": version, "promoted": decision == "promoted", "passed": passed, "reason": reason}


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
    champion = get_run(client, current.run_id)
    differ = test_digest(target_run) != test_digest(champion)
    return (champion.data.metrics.get(metric) if champion is not None else None,
            " (each on its own run's test rows, which differ)" if differ else "")
