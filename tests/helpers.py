"""Helpers shared by the test packages (conftest modules cannot be imported by name:
tests/airflow has its own conftest, and both would be the module `conftest`)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import chdir, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = REPO / "tests" / "fixtures"  # holds mnist/: 600 train + 200 test real images
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


@dataclass
class ProjectRun:
    returncode: int
    stdout: str
    stderr: str
    run: object | None  # mlflow.entities.Run of the run `mlflow run` created, if any

    @property
    def last_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.startswith("error:")]
        return lines[-1] if lines else ""


def all_runs(client):
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def wait_for_recipe_run(client, proc):
    """The newest run, once train.py has set the recipe's tags on it (its signal handlers are in by then)."""
    while True:
        runs = all_runs(client)
        if runs and "mlrecipes.project" in runs[0].data.tags:
            return runs[0]
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        time.sleep(0.5)


def registered_versions(tracking_uri: str, name: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    return client.search_model_versions(f"name='{name}'")


def curve_points(tracking_uri: str, run_id: str) -> list[tuple[int, float, float]]:
    """eval.test_every's points: (step, training seconds, test accuracy), checked for shape."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    acc = {m.step: m.value for m in client.get_metric_history(run_id, "test_curve_accuracy")}
    sec = {m.step: m.value for m in client.get_metric_history(run_id, "test_curve_seconds")}
    assert acc and sorted(acc) == sorted(sec)
    points = [(step, sec[step], acc[step]) for step in sorted(acc)]
    assert all(0 <= a <= 1 for _, _, a in points)
    assert all(s1 < s2 for (_, s1, _), (_, s2, _) in zip(points, points[1:], strict=False)), points  # a clock
    return points


def mlflow_run(uri: str, project: str, *params: str, entry: str = "main", experiment: str = "mnist",
               env: dict | None = None, cwd=None, cli: bool = False, timeout: int = 1800) -> ProjectRun:
    """Run projects/<project> as an MLflow Project, for real, in its own environment; return the
    exit status, the output and the (top-level) run it created.

    By default through `mlflow.projects.run` in this process: the Python API behind `mlflow run`,
    as the launcher calls it, with the same environment build, command and run bookkeeping. The
    `mlflow run` CLI first spends ~3 s importing MLflow's server modules, on every one of the
    smoke suite's ~80 runs; `cli=True` runs the CLI itself (each project's main test does, so
    `mlflow run projects/<p> -P ...` stays covered as users type it). Either way a run past
    `timeout` seconds is killed and raises subprocess.TimeoutExpired.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    before = {r.info.run_id for r in all_runs(client)}
    run_env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    if cli:
        argv = [MLFLOW, "run", str(REPO / "projects" / project), "-e", entry, "--env-manager", "virtualenv",
                "--experiment-name", experiment]
        for p in params:
            argv += ["-P", p]
        proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, cwd=cwd, timeout=timeout)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        code, out, err = _projects_run(uri, project, entry, experiment, params, run_env, cwd, timeout)
    new = [r for r in all_runs(client) if r.info.run_id not in before and "mlflow.parentRunId" not in r.data.tags]
    return ProjectRun(code, out, err, new[0] if new else None)


def _projects_run(uri, project, entry, experiment, params, env, cwd, timeout) -> tuple[int, str, str]:
    import mlflow
    import mlflow.projects
    from mlflow.exceptions import ExecutionException, MlflowException

    from mlrecipes.launch import environ_replaced

    parameters = dict(p.split("=", 1) for p in params)
    with _output() as (out, err), environ_replaced(env), chdir(cwd) if cwd else nullcontext(), \
            _killed_after(timeout) as expired:
        mlflow.set_tracking_uri(uri)
        code = 0
        try:
            mlflow.projects.run(str(REPO / "projects" / project), entry_point=entry, parameters=parameters,
                                experiment_name=experiment, env_manager="virtualenv", synchronous=True)
        except ExecutionException as exc:  # the project failed (what the CLI exits 1 with)
            code = 1
            os.write(2, f"mlflow.exceptions.ExecutionException: {exc.message}\n".encode())
        except MlflowException as exc:  # rejected before the project started, e.g. a bad parameter type
            code = 1
            os.write(2, f"mlflow.exceptions.MlflowException: {exc.message}\n".encode())
    if expired.is_set():  # as subprocess.run(timeout=...) does for the CLI
        raise subprocess.TimeoutExpired(f"mlflow.projects.run {project} -e {entry}", timeout, out.text, err.text)
    return code, out.text, err.text


@contextmanager
def _killed_after(timeout: float):
    """Past `timeout` seconds, SIGKILL every process started under this one since entering (the
    project's shell and train.py; not the session's servers, e.g. moto); yields an Event that says
    whether that happened."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    expired = threading.Event()

    def kill():
        expired.set()
        for p in me.children(recursive=True):
            if p.pid not in before:
                with suppress(psutil.Error):
                    p.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


class _Captured:
    text = ""


@contextmanager
def _output():
    """File descriptors 1 and 2 (what the project's processes inherit) into two strings."""
    captured = (_Captured(), _Captured())
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    try:
        for fd, f in zip((1, 2), files, strict=True):
            os.dup2(f.fileno(), fd)
        yield captured
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        for c, f in zip(captured, files, strict=True):
            f.seek(0)
            c.text = f.read().decode(errors="replace")
            f.close()


def project_python(job: str) -> Path:
    """The interpreter of the environment MLflow built for a job's project (conf/schedule.yaml)."""
    from mlrecipes import schedule
    from mlrecipes.launch import envs

    python = envs.env_dir_for(schedule.load_schedule().job(job)) / "bin" / "python"
    assert python.exists(), f"no project environment at {python}; the project run should have built it"
    return python


def workers_of(stream, name: str) -> set[str]:
    """The workers that ran tasks named `name` (e.g. read-table), from a distributed.get_task_stream record."""
    return {t["worker"] for t in stream.data if name in str(t["key"])}


class borrowed:
    """A cluster.client(cfg) stand-in that hands out the session's Dask client and leaves it open."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return False
