"""The Airflow task's context, as MLflow run tags (stdlib only: train.py and the launcher both tag).

Read from the environment here only: whoever needs it (the registry's gate) is handed the tags.
"""

from __future__ import annotations

import os

# Airflow exports these to every task's environment; the launcher and train.py tag the run with them.
AIRFLOW_CONTEXT = {
    "AIRFLOW_CTX_DAG_ID": "airflow.dag_id",
    "AIRFLOW_CTX_TASK_ID": "airflow.task_id",
    "AIRFLOW_CTX_DAG_RUN_ID": "airflow.dag_run_id",
    "AIRFLOW_CTX_TRY_NUMBER": "airflow.try_number",
    "AIRFLOW_CTX_LOGICAL_DATE": "airflow.logical_date",
}


def airflow_tags() -> dict[str, str]:
    return {tag: os.environ[var] for var, tag in AIRFLOW_CONTEXT.items() if os.environ.get(var)}


def airflow_origin(tags: dict[str, str]) -> str | None:
    """`Airflow <dag id> <dag run id>` from such tags (airflow_tags()'s), or None outside Airflow."""
    run = tags.get("airflow.dag_run_id")
    return f"Airflow {tags.get('airflow.dag_id')} {run}" if run else None
