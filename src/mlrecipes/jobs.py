"""The launcher: the one way to run a job of conf/schedule.yaml as an MLflow Project, and its CLI.

    python -m mlrecipes.jobs list
    python -m mlrecipes.jobs run xgboost -P limit=1000 -P overrides="seed=7"
    python -m mlrecipes.jobs run-all              # every job whose project exists, then the leaderboard
    python -m mlrecipes.jobs prepare-env tf_mnist_cnn   # build or repair a job's environment only
    python -m mlrecipes.jobs run xgboost --memory-limit-mb 2048   # stop it past 2 GB (run FAILED)
    python -m mlrecipes.jobs reap --older-than 10m      # end FAILED the RUNNING runs lost with their host

The Airflow DAG file, `make run` and users all launch through `run`, which:
1. creates the MLflow run itself (the same call `mlflow run` makes), so its id is known from
   the start: written to `--receipt` for Airflow's XCom, and closed by us if the project never does;
2. makes sure the project's environment is complete, under a per-environment file lock;
3. runs the project with `mlflow.projects.run(..., run_id=<id>)` in this process: the Python API
   behind the `mlflow run` CLI, with parameters as a dict (never a shell string). In-process
   because MLflow 3's CLI spends ~4.5 s importing its server and assistant modules before it runs
   anything; one MLflow import per launch keeps the warm overhead over `python train.py` small.
   SIGTERM/SIGINT are forwarded to every process under us, so a killed task leaves its run KILLED.

The pieces live in their own modules: `schedule` (the schedule file, params, the receipt),
`envs` (environment lock, check, rebuild), `supervise` (signals, children); this module launches
and is the CLI. mlflow is imported inside the functions that launch, not at the top.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from mlrecipes.airflow_context import airflow_tags
from mlrecipes.envs import env_dir_for, is_marked, prepare_env
from mlrecipes.errors import (
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    UserError,
    exit_now,
    one_line,
    see,
    tracking_failure,
)
from mlrecipes.paths import REPO_ROOT
from mlrecipes.preflight import absolute_data_dir, check_data
from mlrecipes.schedule import Job, Schedule, check_params, load_schedule, memory_limit
from mlrecipes.store import store_init_lock
from mlrecipes.supervise import (
    Children,
    Terminated,
    TreeMemory,
    death_signal,
    parse_duration,
    project_exit_status,
    reap,
    reap_superseded,
    signal_name,
)


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


@contextmanager
def environ_replaced(env: dict[str, str]):
    """os.environ set to env for the duration."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    for _ in range(3):  # two launchers may create the same experiment at once
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name)
        except MlflowException:
            time.sleep(0.5)
    raise UserError(f"cannot create experiment {name!r}")


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

    uri = os.environ["MLFLOW_TRACKING_URI"]  # child_env's: absolute
    mlflow.set_tracking_uri(uri)
    try:
        with store_init_lock(uri):  # MLflow 3.17 creates a new SQLite store's tables without a lock
            client = mlflow.MlflowClient(uri)
        experiment_id = _experiment_id(client, job.experiment)
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
            rc = children.run([sys.executable, "-m", "mlrecipes.jobs", "prepare-env", job.name],
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
        reaping = "; `python -m mlrecipes.jobs reap` (or the job's next launch) ends it FAILED"
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


def run_all(schedule: Schedule) -> int:
    # Every model once: trainings only. Scoring jobs (entry point predict) need a champion and
    # their input table; sweeps (many trainings) run on their own schedule or with `run <job>`.
    jobs = [job for job in schedule.existing() if job.entry_point == "main"]
    # Data first: without it every job would build its environment (minutes) and then fail.
    check_data([(job, child_env(job)) for job in jobs])
    failed = []
    for job in jobs:
        print(f"[jobs] === {job.name} ===", flush=True)
        rc = launch(job)
        if rc == EXIT_TERMINATED:
            return rc
        if rc:
            failed.append(job.name)
    skipped = [j.name for j in schedule.jobs.values() if not j.exists]
    if skipped:
        print(f"[jobs] skipped (project not present): {', '.join(skipped)}", flush=True)
    others = [j.name for j in schedule.existing() if j.entry_point != "main"]
    if others:
        print(f"[jobs] not run here (scoring, sweeps: `python -m mlrecipes.jobs run <job>`): {', '.join(others)}",
              flush=True)
    if jobs:
        env = child_env(jobs[0])
        subprocess.run([sys.executable, "-m", "mlrecipes.leaderboard", "--tracking-uri", env["MLFLOW_TRACKING_URI"]],
                       env=env, check=False)
    if failed:
        print(f"error: failed job(s): {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


def _reap(schedule: Schedule, max_age_s: float, job: str | None) -> int:
    import mlflow

    if job is not None:
        schedule.job(job)  # an unknown name is an error, not "nothing to reap"
    uris = {child_env(j)["MLFLOW_TRACKING_URI"] for j in schedule.jobs.values()}
    for uri in sorted(uris):
        with store_init_lock(uri):
            client = mlflow.MlflowClient(uri)
        reaped = reap(client, max_age_s, job=job)
        print(f"[jobs] {uri}: {len(reaped)} stale run(s) ended FAILED", flush=True)
    return 0


# ---------------------------------------------------------------- CLI


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected name=value, got {text!r}")  # argparse reports it as usage
    return name, value


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlrecipes.jobs", description=__doc__.split("\n")[0])
    parser.add_argument("--schedule", help="schedule file (default: $MLRECIPES_SCHEDULE or conf/schedule.yaml)")
    parser.add_argument("--profile", help="profile (default: $MLRECIPES_PROFILE or local)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the jobs, their schedule and whether their project exists")
    run = sub.add_parser("run", help="run one job with `mlflow run`")
    run.add_argument("job")
    run.add_argument("-P", dest="params", action="append", type=_param, default=[], metavar="NAME=VALUE")
    run.add_argument("--receipt", help="write {run_id, experiment_id, url, status} as JSON here")
    run_all_parser = sub.add_parser("run-all", help="run every job whose project exists, then print the leaderboard")
    for p in (run, run_all_parser):
        p.add_argument("--memory-limit-mb", metavar="MB",
                       help="stop a run whose process tree's RSS passes MB (run FAILED, exit 2); "
                            "default: the job's memory_limit_mb")
    reaper = sub.add_parser("reap", help="end FAILED the RUNNING runs whose heartbeat is older than --older-than")
    reaper.add_argument("--older-than", default="10m", metavar="AGE", help="e.g. 90s, 10m, 2h, 1d (default 10m)")
    reaper.add_argument("--job", help="only runs of this job (tag mlrecipes.job)")
    prep = sub.add_parser("prepare-env", help="check, repair or build a job's project environment")
    prep.add_argument("job")
    sub.add_parser("pools", help="the Airflow pools, one 'name<TAB>slots<TAB>description' a line")
    args = parser.parse_args(argv)
    # Children (prepare-env, the Airflow task) must read the same file and profile.
    if args.schedule:
        os.environ["MLRECIPES_SCHEDULE"] = str(Path(args.schedule).resolve())
    if args.profile:
        os.environ["MLRECIPES_PROFILE"] = args.profile
    try:
        schedule = load_schedule()
        if args.command == "list":
            from mlrecipes.schedule import job_problems  # the DAG file's verdict on each job

            problems = job_problems(schedule)
            for job in schedule.jobs.values():
                state = problems[job.name] or "ready"
                print(f"{job.name:18} {job.project:12} {str(job.schedule):12} {job.pool:14} {state}")
            return 0
        if args.command == "pools":
            for name, pool in schedule.pools.items():
                print(f"{name}\t{pool.get('slots', 1)}\t{pool.get('description', '')}")
            return 0
        if args.command == "prepare-env":
            path = prepare_env(schedule.job(args.job))
            print(f"[jobs] environment ready: {path or 'local (none)'}", flush=True)
            return 0
        if args.command == "reap":
            return _reap(schedule, parse_duration(args.older_than), args.job)
        if args.memory_limit_mb is not None:  # the command line wins over the schedule
            limit = memory_limit(args.memory_limit_mb, "--memory-limit-mb")
            schedule = replace(schedule, jobs={n: replace(j, memory_limit_mb=limit) for n, j in schedule.jobs.items()})
        if args.command == "run":
            return launch(schedule.job(args.job), dict(args.params), args.receipt)
        return run_all(schedule)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except Terminated:
        return EXIT_TERMINATED


if __name__ == "__main__":
    exit_now(main())
