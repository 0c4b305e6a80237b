"""One DAG per job of conf/schedule.yaml: each runs `mlflow run` through the mlrecipes launcher.

Airflow only schedules, retries and records; the MLflow Project does the training. The task
runs `mlrecipes run <job> -P name=value ...` as an argv list: the trigger
form's values never pass through a shell. The launcher owns the MLflow run (tags from the
Airflow context, environment lock, SIGTERM -> run KILLED); this file only wires it to Airflow.

One bad job fails alone: a DAG is built only for a job that `schedule.job_problems` passes, and
each on its own, so no job can make this file raise. Airflow 3 keeps one import error per file
and marks every DAG of a file that has one stale (hidden, not scheduled), so an error here would
take down every job: the bad jobs are named, with their problems, by the import error of
mlrecipes_schedule_check.py, a file without DAGs.

Parse cost: Airflow's SDK, stdlib and `mlrecipes.schedule` (the schedule reader: PyYAML); no
mlflow, no launcher, no framework, no network.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, BaseOperator, BaseOperatorLink, CronDataIntervalTimetable, Param

REPO = Path(__file__).resolve().parents[2]
SRC = str(REPO / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from mlrecipes import schedule  # noqa: E402  (needs SRC on sys.path)
from mlrecipes.errors import EXIT_USER_ERROR, UserError  # noqa: E402

START = datetime(2025, 1, 1)
log = logging.getLogger(__name__)


class MlflowRunLink(BaseOperatorLink):
    """The task's "MLflow run" button: the run in the MLflow UI (also after a failure or a kill)."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        # Airflow 3 calls this in the worker when the task ends and stores the URL for the UI.
        return getattr(operator, "mlflow_run_url", "") or ""


class MlflowJobOperator(BaseOperator):
    """Runs one schedule job with the launcher; pushes the MLflow run id and URL to XCom."""

    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#d6ecfa"

    def __init__(self, *, job: str, **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.mlflow_run_url = ""
        self._hook = None

    def execute(self, context):
        from airflow.providers.common.compat.sdk import (
            AirflowException,
            AirflowFailException,
            context_to_airflow_vars,
        )
        from airflow.providers.standard.hooks.subprocess import SubprocessHook

        argv = [sys.executable, "-m", "mlrecipes", "run", self.job]
        params = dict(context["params"])
        if not params.get("window") and params.get("window_column"):
            # A job on a time column: the run's data interval is its window (conf/window): the
            # slice it scores (and a rerun replaces), or the end of the one it trains on (with
            # `window_length`).
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if start is not None and end is not None and start < end:
                params["window"] = f"{start.isoformat()}/{end.isoformat()}"
        for name, value in params.items():
            argv += ["-P", f"{name}={schedule.param_text(value)}"]
        env = {**os.environ, **context_to_airflow_vars(context, in_env_var_format=True)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
        self._hook = SubprocessHook()
        with tempfile.TemporaryDirectory(prefix="mlrecipes-") as tmp:
            receipt = Path(tmp, "run.json")
            argv += ["--receipt", str(receipt)]
            try:
                # Own session (SubprocessHook), cwd = the repository: relative paths stay valid.
                result = self._hook.run_command(argv, env=env, cwd=str(REPO))
            finally:  # also on timeout: the run id and link are still worth having
                run = schedule.read_receipt(receipt)
                if run:
                    self.mlflow_run_url = run["url"]
                    ti = context["ti"]
                    ti.xcom_push(key="mlflow_run_id", value=run["run_id"])
                    ti.xcom_push(key="mlflow_experiment_id", value=run["experiment_id"])
                    ti.xcom_push(key="mlflow_run_url", value=run["url"])
        if result.exit_code != 0:
            status = run["status"] if run else "not created"
            message = f"job {self.job} exited {result.exit_code}; MLflow run {status}"
            if result.exit_code == EXIT_USER_ERROR:  # bad param/data, memory limit: a retry cannot help
                raise AirflowFailException(message)
            raise AirflowException(message)
        return run["run_id"]

    def on_kill(self) -> None:
        # SIGTERM to the launcher's group; it forwards it to `mlflow run` and closes the run KILLED.
        if self._hook is not None:
            self._hook.send_sigterm()


def _build(job: schedule.Job, form: dict) -> DAG:
    params = {
        name: Param(f["default"], description=f["schema"].get("description"),
                    **{k: v for k, v in f["schema"].items() if k != "description"})
        for name, f in schedule.form_fields(job, form).items()
    }
    doc = (f"{job.description}\n\n" if job.description else "") + (
        f"Runs `mlflow run projects/{job.project}` through `mlrecipes run {job.name}`. "
        "The MLflow run id is in XCom (`mlflow_run_id`) and behind the task's **MLflow run** link."
    )
    timetable = job.schedule
    if job.schedule and job.params.get("window_column"):
        # A job on a time column: a run covers the interval that just ended (a daily run at 00:00
        # scores yesterday); Airflow 3's plain cron schedule would give it an empty interval.
        timetable = CronDataIntervalTimetable(job.schedule, timezone="UTC")
    with DAG(
        dag_id=f"mlrecipes_{job.name}",
        description=job.description or f"mlflow run projects/{job.project}",
        schedule=timetable,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["mlrecipes", job.project, *map(str, job.tags.values())],
        params=params,
        doc_md=doc,
        auto_register=False,  # only the DAGs put in globals() below: never a half-built one
    ) as dag:
        MlflowJobOperator(
            task_id="mlflow_run",
            job=job.name,
            retries=job.retries,
            retry_delay=timedelta(minutes=job.retry_delay_minutes),
            retry_exponential_backoff=job.retry_backoff,
            max_retry_delay=timedelta(minutes=job.max_retry_delay_minutes),
            execution_timeout=timedelta(minutes=job.timeout_minutes),
            pool=job.pool,
        )
    dag.validate()  # here, not in Airflow's DagBag: there a failure would be the whole file's
    return dag


def build_dags() -> dict[str, DAG]:
    """{dag_id: DAG} of every job without a problem; an unreadable schedule gives none (the
    check file reports it)."""
    try:
        loaded = schedule.load_schedule(strict=False)
    except UserError:
        return {}
    dags = {}
    for name, problem in schedule.job_problems(loaded).items():
        if problem is not None:
            continue
        try:
            dags[f"mlrecipes_{name}"] = _build(loaded.jobs[name], loaded.form)
        except Exception:  # a problem job_problems does not know yet: this job only, in the log
            log.exception("mlrecipes job %s: no DAG", name)
    return dags


globals().update(build_dags())
