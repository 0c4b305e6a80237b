"""Register + gate: every good run gets a version; `champion` moves only past the gate."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlrecipes.store import store_lock


def decide(candidate: float, minimum: float, champion: float | None) -> tuple[bool, str]:
    """Promote when the candidate meets the absolute bar and is not worse than the champion."""
    if candidate < minimum:
        return False, f"accuracy {candidate:.4f} below the gate minimum {minimum:.4f}"
    if champion is not None and candidate < champion:
        return False, f"accuracy {candidate:.4f} worse than the champion's {champion:.4f}"
    if champion is None:
        return True, f"accuracy {candidate:.4f} meets the minimum {minimum:.4f}; no champion yet"
    return True, f"accuracy {candidate:.4f} meets the minimum and matches or beats the champion's {champion:.4f}"


def champion_score(client: MlflowClient, name: str, alias: str, metric: str) -> float | None:
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no registered model or no alias yet
        return None
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    return metrics.get(metric)


def register_and_gate(model_uri: str, name: str, run_id: str, score: float, gate) -> dict:
    """Register `model_uri` as a new version of `name`, apply the gate, tag run and version."""
    client = MlflowClient()
    alias, metric = gate.alias, gate.metric
    with store_lock(mlflow.get_tracking_uri(), "registry"):  # concurrent runs: one gate at a time
        previous = champion_score(client, name, alias, metric)
        version = mlflow.register_model(model_uri, name).version
        promote, reason = decide(score, float(gate.min_accuracy), previous)
        if promote:
            client.set_registered_model_alias(name, alias, version)
    decision = {"gate.decision": "promoted" if promote else "rejected", "gate.reason": reason}
    for key, value in {**decision, metric: f"{score:.6f}"}.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_tag(run_id, "gate.decision", decision["gate.decision"])
    client.set_tag(run_id, "gate.reason", reason)
    client.set_tag(run_id, "registry.model", f"{name}/{version}")
    print(f"registered {name} version {version}: {decision['gate.decision']} ({reason})")
    return {"version": version, "promoted": promote, "reason": reason}
