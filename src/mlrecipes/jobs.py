"""Jobs: the schedule in conf/schedule.yaml, and the one way to launch a job with `mlflow run`.

    python -m mlrecipes.jobs list
    python -m mlrecipes.jobs run xgboost -P limit=1000 -P overrides="seed=7"
    python -m mlrecipes.jobs run-all              # every job whose project exists, then the leaderboard
    python -m mlrecipes.jobs prepare-env tf_mnist_cnn   # build or repair a job's environment only

The Airflow DAG file, `make run` and users all launch through `run`, which:
1. creates the MLflow run itself (the same call `mlflow run` makes), so its id is known from
   the start: written to `--receipt` for Airflow's XCom, and closed by us if the project never does;
2. makes sure the project's environment is complete, under a per-environment file lock;
3. runs the project with `mlflow.projects.run(..., run_id=<id>)` in this process: the Python API
   behind the `mlflow run` CLI, with parameters as a dict (never a shell string). In-process
   because MLflow 3's CLI spends ~4.5 s importing its server and assistant modules before it runs
   anything; one MLflow import per launch keeps the warm overhead over `python train.py` small.
   SIGTERM/SIGINT are forwarded to every process under us, so a killed task leaves its run KILLED.

Import cost matters (the DAG file imports this module at parse time): stdlib + PyYAML only at
the top; mlflow is imported inside the functions that launch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import yaml

from mlrecipes.errors import EXIT_TERMINATED, EXIT_USER_ERROR, UserError, one_line

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEDULE_FILE = REPO_ROOT / "conf" / "schedule.yaml"
ENV_MARKER = ".mlrecipes-verified"  # written into an environment once it has been verified

# Hydra override tokens separated by spaces: `key=value`, `+key=value`, `++key=value`, `~key`,
# `~key=value`. No quotes, `$`, `;`, `|`, `&`, backticks, parentheses, globs or redirections:
# nothing a shell would interpret, even though the value never reaches a shell unquoted.
_KEY = r"[A-Za-z_][A-Za-z0-9_.@/\-]*"
_VALUE = r"[A-Za-z0-9_.,:+\-/@%\[\]]*"
_TOKEN = rf"(~{_KEY}(={_VALUE})?|\+{{0,2}}{_KEY}={_VALUE})"
# Tokens separated by spaces only (a newline separates shell commands). `(?!\n)`: Python's `$`
# (jsonschema uses re.search) also matches before a final newline, ECMA's (the browser's) does not.
OVERRIDES_PATTERN = rf"^ *({_TOKEN}( +{_TOKEN})*)? *$(?!\n)"


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


@dataclass(frozen=True)
class Job:
    """One entry of the schedule, with defaults and the active profile applied."""

    name: str
    project: str
    params: dict = field(default_factory=dict)
    schedule: str | None = None
    tracking_uri: str | None = None
    ui_url: str = "http://127.0.0.1:5000"
    experiment: str = "mnist"
    entry_point: str = "main"
    env_manager: str = "virtualenv"
    env_root: str | None = None
    env: dict = field(default_factory=dict)
    retries: int = 2
    retry_delay_minutes: float = 2
    retry_backoff: float = 2.0
    max_retry_delay_minutes: float = 30
    timeout_minutes: float = 120
    kill_grace_seconds: float = 60
    pool: str = "default_pool"
    tags: dict = field(default_factory=dict)
    description: str = ""
    projects_dir: str | None = None

    @property
    def project_dir(self) -> Path:
        return REPO_ROOT / (self.projects_dir or "projects") / self.project  # relative: to the repo

    @property
    def exists(self) -> bool:
        return (self.project_dir / "MLproject").is_file()

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


@dataclass(frozen=True)
class Schedule:
    jobs: dict[str, Job]
    form: dict[str, dict]
    pools: dict[str, dict]
    profile: str

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            raise UserError(f"unknown job {name!r}; jobs: {', '.join(self.jobs)}")
        return self.jobs[name]

    def existing(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.exists]


_JOB_KEYS = {f.name for f in fields(Job)} - {"name"}


# libyaml's parser when PyYAML has it: the DAG file parses YAML at every DAG-processor pass.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a safe loader)


@lru_cache(maxsize=64)
def _mlproject(project_dir: Path) -> dict:
    return _yaml((project_dir / "MLproject").read_text()) or {}


def load_schedule(path: str | Path | None = None, profile: str | None = None) -> Schedule:
    """Read the schedule; $MLRECIPES_SCHEDULE and $MLRECIPES_PROFILE pick file and profile."""
    path = Path(path or os.environ.get("MLRECIPES_SCHEDULE") or SCHEDULE_FILE)
    profile = profile or os.environ.get("MLRECIPES_PROFILE") or "local"
    try:
        doc = _yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read schedule {path}: {exc}") from None
    profiles = doc.get("profiles") or {}
    if profile not in profiles:
        raise UserError(f"unknown profile {profile!r} in {path}; profiles: {', '.join(profiles)}")
    base = _merge(doc.get("defaults") or {}, profiles[profile] or {})
    jobs = {}
    for name, entry in (doc.get("jobs") or {}).items():
        merged = _merge(base, entry or {})
        unknown = sorted(set(merged) - _JOB_KEYS)
        if unknown or "project" not in merged:
            problem = f"unknown key(s) {', '.join(unknown)}" if unknown else "no project"
            raise UserError(f"schedule job {name!r}: {problem}")
        jobs[name] = Job(name=name, **merged)
    return Schedule(jobs, doc.get("form") or {}, doc.get("pools") or {}, profile)


def _merge(base: dict, over: dict) -> dict:
    """Later wins; the `env`, `tags` and `params` mappings are merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if key in ("env", "tags", "params") and isinstance(value, dict):
            out[key] = {**(out.get(key) or {}), **value}
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- MLproject params and the form


def project_params(job: Job) -> dict[str, dict]:
    """The entry point's declared parameters: {name: {type, default}}."""
    spec = _mlproject(job.project_dir)
    entry = (spec.get("entry_points") or {}).get(job.entry_point)
    if entry is None:
        raise UserError(f"project {job.project} has no entry point {job.entry_point!r}")
    return {k: (v if isinstance(v, dict) else {"type": "string", "default": v})
            for k, v in (entry.get("parameters") or {}).items()}


def form_fields(job: Job, form: dict[str, dict]) -> dict[str, dict]:
    """JSON schema + default of every parameter, for the Airflow trigger form (defaults = the job's)."""
    out = {}
    for name, spec in project_params(job).items():
        schema = dict(form.get(name) or {"type": _JSON_TYPES.get(spec.get("type", "string"), "string")})
        if name == "overrides":
            schema["pattern"] = OVERRIDES_PATTERN
        default = job.params.get(name, spec.get("default"))
        if schema.get("type") == "integer" and isinstance(default, float) and default.is_integer():
            default = int(default)  # MLproject floats like 400.0 shown as 400 in an integer field
        out[name] = {"default": default, "schema": schema}
    return out


_JSON_TYPES = {"float": "number", "int": "integer", "string": "string", "path": "string", "uri": "string"}


def check_params(job: Job, params: dict) -> dict[str, str]:
    """Names declared by the project, values of the declared type, overrides well formed."""
    declared = project_params(job)
    out = {}
    for name, value in params.items():
        if name not in declared:
            raise UserError(f"unknown parameter {name!r} for project {job.project}; "
                            f"valid: {', '.join(declared)}")
        text = param_text(value)
        kind = declared[name].get("type", "string")
        try:
            {"float": float, "int": int}.get(kind, str)(text)
        except ValueError:
            raise UserError(f"parameter {name}={text!r} is not a {kind}") from None
        if name == "overrides" and not re.search(OVERRIDES_PATTERN, text):
            raise UserError(f"overrides {text!r}: expected space-separated key=value tokens "
                            "without quotes or shell characters")
        out[name] = text
    return out


def param_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 12.0 from a JSON form would reach Hydra as a float
    return str(value)


def project_run_kwargs(job: Job, params: dict[str, str], run_id: str, experiment_id: str) -> dict:
    """Arguments of `mlflow.projects.run` (what `mlflow run` passes it): parameters stay a dict."""
    return {"uri": str(job.project_dir), "entry_point": job.entry_point, "parameters": params,
            "experiment_id": experiment_id, "run_id": run_id, "env_manager": job.env_manager,
            "synchronous": True}  # False would start the `mlflow run` CLI in a subprocess


def child_env(job: Job) -> dict[str, str]:
    """Environment of `mlflow run`: ours + the profile's + tracking URI, env root, shared code."""
    env = {**os.environ, **{k: str(v) for k, v in job.env.items()}}
    env["MLFLOW_TRACKING_URI"] = job.resolved_tracking_uri()
    if job.env_root:
        env["MLFLOW_ENV_ROOT"] = job.env_root
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach Airflow as they happen
    return env


# ---------------------------------------------------------------- environment safety
#
# MLflow builds a project environment in <env root>/<name> (name = hash of python_env.yaml) with
# no lock, and reuses any existing directory: two cold runs at once install into the same
# directory, and an install killed half-way is reused as if complete. So before `mlflow run`:
# - an environment holding our marker was verified after a complete build: used as is, no lock
#   (warm runs of a project never wait for each other, and nothing deletes a marked environment);
# - otherwise we take an exclusive lock on <env root>/<name>.lock, look again, check the
#   environment (pinned versions installed, every dependency importable), delete it if broken,
#   let MLflow's own builder rebuild it, check it, and mark it. The lock covers only this step,
#   not the training: `mlflow run` finds the environment ready and builds nothing.
# The lock is flock(2): the kernel drops it when its holder dies, even on SIGKILL.


def env_dir_for(job: Job) -> Path:
    """The directory `mlflow run` will use for this job's environment (MLflow's own naming)."""
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _get_mlflow_virtualenv_root, _get_virtualenv_name

    python_env = _PythonEnv.from_yaml(job.project_dir / _python_env_file(job))
    root = Path(job.env_root or _get_mlflow_virtualenv_root())
    return root / _get_virtualenv_name(python_env, job.project_dir)


def _python_env_file(job: Job) -> str:
    spec = _mlproject(job.project_dir)
    if not spec.get("python_env"):
        raise UserError(f"project {job.project} has no python_env; use env_manager: local")
    return spec["python_env"]


@contextmanager
def env_lock(lock_path: Path, say=print):
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"[jobs] waiting for {lock_path.name}: another job is building this environment")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def is_marked(env_dir: Path) -> bool:
    return (env_dir / ENV_MARKER).is_file() and (env_dir / "bin" / "python").exists()


# Run by the environment's own python: every pinned requirement is installed at its version and
# its top-level module imports. A half-finished pip install fails one of the two.
_CHECK_ENV = r"""
import importlib, importlib.metadata as md, json, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
tops = {}
for module, dists in md.packages_distributions().items():
    for d in dists:
        tops.setdefault(norm(d), []).append(module)
for line in json.loads(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?", line)
    if not m or line.lstrip().startswith("-"):
        continue
    name, pinned = m.group(1), m.group(2)
    try:
        got = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"{name} is not installed")
    if pinned and got != pinned:
        sys.exit(f"{name} is {got}, not {pinned}")
    modules = sorted((t for t in tops.get(norm(name), []) if not t.startswith("_")), key=len)
    if modules:
        try:
            importlib.import_module(modules[0])
        except BaseException as exc:
            sys.exit(f"import {modules[0]} failed: {type(exc).__name__}: {exc}")
"""


def check_env(env_dir: Path, dependencies: list[str]) -> str | None:
    """None when the environment is complete, else why it is not."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        return "no bin/python"
    proc = subprocess.run([str(python), "-c", _CHECK_ENV, json.dumps(dependencies)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        return (proc.stderr.strip().splitlines() or [f"check exited {proc.returncode}"])[-1]
    return None


def prepare_env(job: Job, say=print) -> Path | None:
    """Make sure `mlflow run` will find a complete environment for this job; return its path."""
    if job.env_manager == "local":
        return None
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _create_virtualenv

    env_dir = env_dir_for(job)
    if is_marked(env_dir):
        return env_dir
    python_env = _PythonEnv.from_yaml(job.project_dir / _python_env_file(job))
    deps = list(python_env.dependencies or [])
    with env_lock(env_dir.with_name(env_dir.name + ".lock"), say):
        if is_marked(env_dir):  # built by the job we waited for
            return env_dir
        if env_dir.exists():
            problem = check_env(env_dir, deps)
            if problem is None:
                (env_dir / ENV_MARKER).write_text(f"{job.project}\n")
                return env_dir
            say(f"[jobs] environment {env_dir} is broken ({problem}): removing it to rebuild")
            shutil.rmtree(env_dir)
        say(f"[jobs] building environment {env_dir} for {job.project} (first run: minutes)")
        _create_virtualenv(local_model_path=job.project_dir, python_env=python_env,
                           env_dir=env_dir, env_manager=job.env_manager)
        problem = check_env(env_dir, deps)
        if problem is not None:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise UserError(f"environment for {job.project} is incomplete after building: {problem}")
        (env_dir / ENV_MARKER).write_text(f"{job.project}\n")
    return env_dir


# ---------------------------------------------------------------- launching


class Terminated(Exception):
    """SIGTERM/SIGINT arrived while no child was running."""


class _Children:
    """Forwards SIGTERM/SIGINT to whatever runs under us, then waits for it to close its run.

    Two kinds of children: `prepare-env` runs as a child in its own process group (the signal
    goes to the group: its pip installs stop too); the project runs in-process under
    `mlflow.projects.run`, which starts `bash -c "source activate && python train.py"` in our
    group, so the signal goes to every descendant (bash dies at once; train.py closes its run
    KILLED). Either way we wait until they are gone, SIGKILL after the grace period, so the
    run is closed before we report.
    """

    def __init__(self, grace_seconds: float):
        self.grace = grace_seconds
        self.child: subprocess.Popen | None = None
        self.in_project = False
        self.stopping: list = []  # psutil processes we signalled, waited for after the project
        self.signaled = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        first = not self.signaled
        self.signaled = True
        sig = signal.SIGTERM if first else signal.SIGKILL
        if self.child is not None:
            self._kill(sig)
        elif not (self.in_project and self._signal_descendants(sig)) and first:
            raise Terminated()  # nothing running yet: stop where we are

    def _kill(self, sig) -> None:
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def _signal_descendants(self, sig) -> bool:
        import psutil

        procs = psutil.Process().children(recursive=True)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        self.stopping += procs
        return bool(procs)

    def run(self, argv: list[str], env: dict, cwd: Path) -> int:
        self.child = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)
        if self.signaled:
            self._kill(signal.SIGTERM)
        try:
            rc = self.child.wait()
            self._wait_group_gone()
            return rc
        finally:
            self.child = None

    @contextmanager
    def project(self):
        """Around `mlflow.projects.run`: signals reach the processes it starts."""
        if self.signaled:
            raise Terminated()
        self.in_project = True
        try:
            yield
        finally:
            self.in_project = False
            self._wait_stopping_gone()

    def _wait_stopping_gone(self) -> None:
        import psutil

        # bash is gone at once; train.py (reparented) may still be closing its run.
        _, alive = psutil.wait_procs(self.stopping, timeout=self.grace)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def _wait_group_gone(self) -> None:
        deadline = None
        while True:
            try:
                os.killpg(self.child.pid, 0)
            except ProcessLookupError:
                return
            if self.signaled:  # members still closing their run after SIGTERM: give them grace
                deadline = deadline or time.monotonic() + self.grace
                if time.monotonic() > deadline:
                    self._kill(signal.SIGKILL)
            elif deadline is None:
                deadline = time.monotonic() + self.grace  # leftover of a finished run
            elif time.monotonic() > deadline:
                self._kill(signal.SIGKILL)
            time.sleep(0.2)


@contextmanager
def _environ(env: dict[str, str]):
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


def read_receipt(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def launch(job: Job, overrides: dict | None = None, receipt: str | None = None) -> int:
    """Run one job as an MLflow Project; returns its exit status (143 when terminated)."""
    if not job.exists:
        raise UserError(f"job {job.name}: project {job.project_dir} has no MLproject")
    params = check_params(job, {**job.params, **(overrides or {})})
    # The job's environment for us too (MLflow reads its settings, e.g. telemetry, at import);
    # `mlflow.projects.run` hands os.environ on to the project.
    with _environ(child_env(job)):
        return _launch(job, params, receipt)


def _launch(job: Job, params: dict[str, str], receipt: str | None) -> int:
    children = _Children(job.kill_grace_seconds)

    import mlflow
    import mlflow.projects
    from mlflow.entities import RunTag
    from mlflow.exceptions import ExecutionException, MlflowException
    from mlflow.projects.utils import _create_run

    uri = job.resolved_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = _experiment_id(client, job.experiment)
    # The run `mlflow run` would create, created here so we own its id (same tags and params).
    run_id = _create_run(str(job.project_dir), experiment_id, str(job.project_dir), None,
                         job.entry_point, params).info.run_id
    receipt_doc = {"job": job.name, "run_id": run_id, "experiment_id": experiment_id,
                   "url": job.run_url(experiment_id, run_id), "status": "RUNNING"}
    rc = 1
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
            with children.project():
                try:
                    mlflow.projects.run(**project_run_kwargs(job, params, run_id, experiment_id))
                except ExecutionException:  # the project failed; train.py said why on stderr
                    rc = 1
                except MlflowException as exc:  # before the project started, e.g. its environment
                    print(f"error: {one_line(exc.message)}", file=sys.stderr, flush=True)
                    rc = 1
    except Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the bookkeeping below must complete
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run = client.get_run(run_id)
        status = run.info.status
        if rc:  # the recipe records its exit status on the run (2: bad input, a retry cannot help)
            rc = int(run.data.tags.get("mlrecipes.exit_code", rc))
        # RUNNING: the project never got to close it. FAILED after a signal: MLflow closes the
        # run FAILED as soon as bash dies, racing train.py closing it KILLED; train.py is gone now.
        if status in ("RUNNING", "SCHEDULED") or (children.signaled and status == "FAILED"):
            status = "KILLED" if children.signaled else ("FINISHED" if rc == 0 else "FAILED")
            client.set_terminated(run_id, status)
        _write_receipt(receipt, {**receipt_doc, "status": status})
        print(f"[jobs] {job.name}: MLflow run {run_id} {status}", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return EXIT_TERMINATED if children.signaled else rc


def run_all(schedule: Schedule) -> int:
    failed = []
    for job in schedule.existing():
        print(f"[jobs] === {job.name} ===", flush=True)
        rc = launch(job)
        if rc == EXIT_TERMINATED:
            return rc
        if rc:
            failed.append(job.name)
    skipped = [j.name for j in schedule.jobs.values() if not j.exists]
    if skipped:
        print(f"[jobs] skipped (project not present): {', '.join(skipped)}", flush=True)
    jobs = schedule.existing()
    if jobs:
        uri = jobs[0].resolved_tracking_uri()
        subprocess.run([sys.executable, "-m", "mlrecipes.leaderboard", "--tracking-uri", uri],
                       env=child_env(jobs[0]), check=False)
    if failed:
        print(f"error: failed job(s): {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
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
    sub.add_parser("run-all", help="run every job whose project exists, then print the leaderboard")
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
            for job in schedule.jobs.values():
                state = "ready" if job.exists else "skipped: no MLproject"
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
        if args.command == "run":
            return launch(schedule.job(args.job), dict(args.params), args.receipt)
        return run_all(schedule)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except Terminated:
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
