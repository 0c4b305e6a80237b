"""Runs lost with their process: a RUNNING run whose heartbeat (its latest system metric) is older
than an age is ended FAILED; so are the runs of earlier tries of an Airflow task instance."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from mlrecipes.errors import UserError

#
# A run's heartbeat is its latest `system/*` metric (train.py logs MLflow's system metrics every
# few seconds), or its start time when it has none yet. A RUNNING run whose heartbeat is older
# than the allowed age lost its process (host gone, launcher SIGKILLed too): it is ended FAILED.

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h', '1d' -> seconds (> 0); anything else is a UserError."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if seconds <= 0:
        raise UserError(f"age {text!r} is not a duration: use e.g. 90s, 10m, 2h or 1d")
    return seconds


def heartbeat_ms(client, run) -> int:
    """Milliseconds since the epoch of the run's latest `system/*` metric, else its start time."""
    beats = [m.timestamp for key in run.data.metrics if key.startswith("system/")
             for m in client.get_metric_history(run.info.run_id, key)]
    return max(beats, default=run.info.start_time or 0)


def reap(client, max_age_s: float, experiment_ids: list[str] | None = None, job: str | None = None,
         say=print) -> list[str]:
    """End FAILED every RUNNING run (of `job`, when given) whose heartbeat is older than max_age_s."""
    now_ms = int(time.time() * 1000)
    limit_ms = now_ms - int(max_age_s * 1000)
    ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    reaped = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if job is not None and run.data.tags.get("mlrecipes.job") != job:
            continue
        if (run.info.start_time or 0) > limit_ms:
            continue  # started within the age: fresh whatever its metrics say (cheap: no history)
        beat = heartbeat_ms(client, run)
        if beat > limit_ms:
            continue
        since = datetime.fromtimestamp(beat / 1000, tz=UTC).isoformat(timespec="seconds")
        client.set_tag(run.info.run_id, "mlrecipes.error", f"lost: no heartbeat since {since}")
        client.set_terminated(run.info.run_id, "FAILED")
        say(f"[jobs] reaped run {run.info.run_id} ({run.data.tags.get('mlrecipes.job', '-')}): "
            f"no heartbeat since {since}")
        reaped.append(run.info.run_id)
    return reaped


def reap_superseded(client, experiment_id: str, context: dict[str, str], say=print) -> list[str]:
    """End FAILED the RUNNING runs of earlier tries of this Airflow task instance.

    Airflow starts try N only after it gave up on try N-1 (its worker was lost, its heartbeat
    timed out), so a run of an earlier try that is still RUNNING has no process left to close it:
    its launcher died with its worker. `context` is the run's `airflow.*` tags (airflow_tags()).
    """
    keys = ("airflow.dag_id", "airflow.dag_run_id", "airflow.task_id")
    current = context.get("airflow.try_number", "")
    if not current.isdigit() or not all(context.get(k) for k in keys):
        return []
    dag_id = context["airflow.dag_id"].replace("'", "")
    runs = client.search_runs([experiment_id], max_results=1000,
                              filter_string=f"attributes.status = 'RUNNING' and tags.`airflow.dag_id` = '{dag_id}'")
    reaped = []
    for run in runs:
        tags = run.data.tags
        earlier = tags.get("airflow.try_number", "")
        if any(tags.get(k) != context[k] for k in keys) or not earlier.isdigit() or int(earlier) >= int(current):
            continue
        why = f"lost: try {earlier} was given up by Airflow, retried as try {current}"
        client.set_tag(run.info.run_id, "mlrecipes.error", why)
        client.set_terminated(run.info.run_id, "FAILED")
        say(f"[jobs] closed run {run.info.run_id} of try {earlier}: {why}")
        reaped.append(run.info.run_id)
    return reaped
