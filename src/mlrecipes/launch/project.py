"""Launch one job of conf/schedule.yaml as an MLflow Project: the one way every caller runs a job
(`mlrecipes run`, `make run`, the Airflow task). `launch`:
1. creates the MLflow run itself (the same call `mlflow run` makes), so its id is known from
   the start: written to `--receipt` for Airflow's XCom, and closed by us if the project never does;
2. makes sure the project's environment is complete, under a per-environment file lock (envs);
3. runs the project with `mlflow.projects.run(..., run_id=<id>)` in this process: the Python API
   behind the `mlflow run` CLI, with parameters as a dict (never a shell string). In-process
   because MLflow 3's CLI spends seconds importing its server modules before it runs anything;
   one MLflow import per launch keeps the warm overhead over `python train.py` small.
   SIGTERM/SIGINT are forwarded to every process under us (supervise), so a killed task leaves its
   run KILLED. mlflow is imported inside the functions that launch, not at the top.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

from mlrecipes.airflow_context import airflow_tags
from mlrecipes.errors import (
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    UserError,
    one_line,
    see,
    tracking_failure,
)
from mlrecipes.launch.envs import env_dir_for, environ_replaced, is_marked
from mlrecipes.launch.preflight import absolute_data_dir
from mlrecipes.launch.reap import reap, reap_superseded
from mlrecipes.launch.supervise import Children, Terminated, TreeMemory, death_signal, project_exit_status, signal_name
from mlrecipes.paths import REPO_ROOT
from mlrecipes.schedule import Job, check_params
from mlrecipes.store import store_init_lock


def project_run_kwargs(job: Job, params: dict[str, str], run_id: str, experiment_id: str) -> dict:
    """Arguments of `mlflow.projects.run` (what `mlflow run` passes it): parameters stay a dict."""
    return {"uri": str(job.project_dir), "entry_point": job.entry_point, "parameters": params,
            "experiment_id": experiment_id, "run_id": run_id, "env_manager": job.env_manager,
            "synchronous": True}  # False would start the `mlflow run` CLI in a subprocess


def child_env(job: Job) -> dict[str, str]:
    """Environment of `mlflow run`: ours + the profile's + tracking URI, env root, shared code."""
    env = {**os.environ, **{k: str(v) for k, v in job.env.items()}}
    # Relative paths mean the caller's directory: `mlflow run` starts train.py in the project's.
    cwd = Path.cwd()
    env["MLFLOW_TRACKING_URI"] = job.resolved_tracking_uri()  # store.tracking_uri: absolute, from cwd
    if env.get("MLRECIPES_DATA_DIR"):
        env["MLRECIPES_DATA_DIR"] = absolute_data_dir(env["MLRECIPES_DATA_DIR"], cwd)
    if job.env_root:
        env["MLFLOW_ENV_ROOT"] = job.env_root
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach Airflow as they happen
    return env


# ---------------------------------------------------------------- launching


def _write_receipt(path: str | None, receipt: dict) -> None:
    if not path:
        return
    try:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(receipt))
        tmp.replace(path)
    except OSError:
        pass  # the caller may have gone (an Airflow task that timed out): the run still ends


def launch(job: Job, overrides: dict | None = None, receipt: str | None = None) -> int:
    """Run one job as an MLflow Project; returns its exit status (143 when terminated)."""
    if not job.exists:
        raise UserError(f"job {job.name}: project {job.project_dir} has no MLproject")
    params = check_params(job, {**job.params, **(overrides or {})})
    # The job's environment for us too (MLflow reads its settings, e.g. telemetry, at import);
    # `mlflow.projects.run` hands os.environ on to the project.
    with environ_replaced(child_env(job)):
        return _launch(job, params, receipt)


def _launch(job: Job, params: dict[str, str], receipt: str | None) -> int:
    children = Children(job.kill_grace_seconds)

    import mlflow
    import mlflow.projects
    from mlflow.entities import RunTag
    from mlflow.exceptions import ExecutionException, MlflowException
    from mlflow.projects.utils import _create_run

    from mlrecipes import tracking

    uri = os.environ["MLFLOW_TRACKING_URI"]  # child_env's: absolute
    mlflow.set_tracking_uri(uri)
    try:
        with store_init_lock(uri):  # MLflow 3.17 creates a new SQLite store's tables without a lock
            client = mlflow.MlflowClient(uri)
        experiment_id = tracking.ensure_experiment(client, job.experiment)  # opens on its runs table
        # Runs of this job lost with their host: older than the job's timeout, Airflow stopped
        # waiting for them long ago, and a run still building its environment is never that old.
        reap(client, job.timeout_minutes * 60, [experiment_id], job=job.name)
        # A retry of an Airflow task: the earlier tries' runs still RUNNING lost their launcher.
        reap_superseded(client, experiment_id, airflow_tags())
        # The run `mlflow run` would create, created here so we own its id (same tags and params).
        run_id = _create_run(str(job.project_dir), experiment_id, str(job.project_dir), None,
                             job.entry_point, params).info.run_id
    except MlflowException as exc:  # no login, no permission, no server: one line, no run created
        failure = tracking_failure(exc, uri)
        if failure is None:
            raise
        print(f"error: {failure[0]}", file=sys.stderr, flush=True)
        return failure[1]
    receipt_doc = {"job": job.name, "run_id": run_id, "experiment_id": experiment_id,
                   "url": job.run_url(experiment_id, run_id), "status": "RUNNING"}
    rc = 1
    memory, exit_status, lost = None, {}, None
    try:
        _write_receipt(receipt, receipt_doc)
        print(f"[jobs] {job.name}: MLflow run {run_id} ({receipt_doc['url']})", flush=True)
        tags = {"mlrecipes.job": job.name, **{k: str(v) for k, v in job.tags.items()}, **airflow_tags()}
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        rc = 0
        if job.env_manager != "local" and not is_marked(env_dir_for(job)):
            # Checked or built in a child, so a SIGTERM also stops its pip installs.
            rc = children.run([sys.executable, "-m", "mlrecipes", "prepare-env", job.name],
                              env=dict(os.environ), cwd=REPO_ROOT)
        if rc == 0:
            with children.project(), TreeMemory(job.memory_limit_mb) as memory, \
                    project_exit_status(mlflow.projects) as exit_status:
                try:
                    mlflow.projects.run(**project_run_kwargs(job, params, run_id, experiment_id))
                except ExecutionException:  # the project failed; train.py said why on stderr
                    rc = 1
                except MlflowException as exc:  # before the project started (its environment), or
                    # closing a failed project's run while the tracking server is away
                    failure = tracking_failure(exc, uri)
                    message = one_line(exc.message)
                    hint = (see("pyenv-or-the-pinned-python-is-missing") if "pyenv" in message.lower()
                            else see("the-environment-build-failed-or-was-interrupted"))
                    if failure is None:
                        print(f"error: {message}{hint}", file=sys.stderr, flush=True)
                    lost = failure  # train.py already said so, in its one error line
                    rc = 1
    except Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the bookkeeping below must complete
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The tracking server went away past the retry budget: nobody can close the run now (each
        # call would wait another budget); the reaper ends it FAILED once the server is back.
        reaping = "; `mlrecipes reap` (or the job's next launch) ends it FAILED"
        status = "RUNNING"
        if lost is not None:
            print(f"[jobs] {job.name}: tracking server unreachable, MLflow run {run_id} left RUNNING{reaping}",
                  flush=True)
        else:
            try:
                rc, status = _close(client, run_id, rc, children, memory, exit_status)
            except MlflowException as exc:
                failure = tracking_failure(exc, uri)
                if failure is None:
                    raise
                rc = rc or failure[1]
                print(f"error: {failure[0]}; MLflow run {run_id} left RUNNING{reaping}", file=sys.stderr, flush=True)
        _write_receipt(receipt, {**receipt_doc, "status": status})
        print(f"[jobs] {job.name}: MLflow run {run_id} {status}", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return EXIT_TERMINATED if children.signaled else rc


def _close(client, run_id: str, rc: int, children: Children, memory, exit_status: dict) -> tuple[int, str]:
    """Reads how the run ended, closes it when the project could not; returns (exit status, run status)."""
    from mlflow.entities import RunTag

    run = client.get_run(run_id)
    status = run.info.status
    if rc:  # the recipe records its exit status on the run (2: bad input, a retry cannot help)
        rc = int(run.data.tags.get("mlrecipes.exit_code", rc))
    why = None
    if memory is not None and memory.exceeded:  # more memory than the job may use: not retried
        rc, why = EXIT_USER_ERROR, (f"memory limit {memory.limit_mb:g} MB exceeded "
                                    f"(peak {math.ceil(memory.peak_mb)} MB)")
    elif rc and not children.signaled and death_signal(exit_status.get("returncode")):
        sig = death_signal(exit_status["returncode"])  # no handler ran: nothing closed the run
        name = signal_name(sig)
        rc = 128 + sig  # non-zero and not 2: Airflow retries
        why = f"killed by {name}" + (", likely out of memory" if sig == signal.SIGKILL else "")
        why += f"; peak RSS {memory.peak_mb:.0f} MB"
    if why:  # the tag keeps the plain reason; the line also says where to read more
        print(f"error: {why}{see('a-task-was-killed-for-memory')}", file=sys.stderr, flush=True)
        client.log_batch(run_id, tags=[RunTag("mlrecipes.error", why), RunTag("mlrecipes.exit_code", str(rc))])
        if status != "FAILED":
            status = "FAILED"
            client.set_terminated(run_id, status)
    # RUNNING: the project never got to close it. FAILED after a signal: MLflow closes the
    # run FAILED as soon as bash dies, racing train.py closing it KILLED; train.py is gone now.
    if status in ("RUNNING", "SCHEDULED") or (children.signaled and status == "FAILED"):
        status = "KILLED" if children.signaled else ("FINISHED" if rc == 0 else "FAILED")
        client.set_terminated(run_id, status)
    return rc, status
