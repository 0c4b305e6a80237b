"""The schedule's bad jobs, as this file's Airflow import error; it defines no DAG.

Airflow 3 records one import error per DAG file and marks every DAG of a file that has one
stale: hidden and not scheduled. So mlrecipes_dags.py never raises: it builds the DAG of each job
that `mlrecipes.schedule.job_problems` passes, and this file raises one error that names every
other job with its problem (the UI's "Dag Import Errors"; `mlrecipes list` prints the same).
A job whose project does not exist yet is skipped, not an error. Parse cost: the same schedule
read as mlrecipes_dags.py, without Airflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from mlrecipes import schedule  # noqa: E402  (needs SRC on sys.path)
from mlrecipes.errors import UserError  # noqa: E402


def report() -> str | None:
    """The import error's text, or None when every job is scheduled (or skipped)."""
    try:
        loaded = schedule.load_schedule(strict=False)
    except UserError as exc:
        return f"no job is scheduled: {exc}"
    bad = {name: problem for name, problem in schedule.job_problems(loaded).items()
           if problem not in (None, schedule.SKIPPED)}
    if not bad:
        return None
    lines = [f"job {name}: {problem}" for name, problem in bad.items()]
    return f"{len(bad)} job(s) without a DAG (every other job has its DAG):\n" + "\n".join(lines)


_problem = report()
if _problem:
    raise UserError(_problem)  # shown as "mlrecipes.errors.UserError: <the jobs and problems>"
