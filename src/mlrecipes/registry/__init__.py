"""The model registry: register + gate, and every later move of the champion alias, audited.

    versions.py  reading the registry: a model's versions, the alias holder, a version's run
    audit.py     the audit trail: move_alias records every move; history, render_history
    gate.py      the gate (Gate, decide) and register_and_gate, the recipe's last step
    moves.py     promote and rollback by hand, under the registry lock
    command.py   the verbs promote | rollback | history of `mlrecipes` (`python -m mlrecipes.registry` is an alias)

The registry never reads Airflow's context or picks a store itself: its callers hand it the
client (or the active MLflow store) and the context to record.
"""

from mlrecipes.registry.audit import (
    HISTORY_COLUMNS,
    audit_records,
    describe,
    history,
    move_alias,
    previous_champion,
    render_history,
)
from mlrecipes.registry.command import command
from mlrecipes.registry.gate import Gate, baseline_metric, decide, register_and_gate
from mlrecipes.registry.moves import promote, rollback
from mlrecipes.registry.versions import holder, model_versions

__all__ = [
    "HISTORY_COLUMNS", "Gate", "audit_records", "baseline_metric", "command", "decide", "describe", "history", "holder",
    "model_versions", "move_alias", "previous_champion", "promote", "register_and_gate",
    "render_history", "rollback",
]
