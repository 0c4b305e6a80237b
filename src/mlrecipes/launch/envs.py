"""Environment safety: the project environment `mlflow run` will use is complete before it runs.

MLflow builds a project environment in <env root>/<name> (name = hash of python_env.yaml) with
no lock, and reuses any existing directory: two cold runs at once install into the same
directory, and an install killed half-way is reused as if complete. So before `mlflow run`:
- an environment holding our marker was verified after a complete build: used as is, no lock
  (warm runs of a project never wait for each other, and nothing deletes a marked environment);
- otherwise we take an exclusive lock on <env root>/<name>.lock, look again, check the
  environment (pinned versions installed, every dependency importable), delete it if broken,
  let MLflow's own builder rebuild it, check it, and mark it. The lock covers only this step,
  not the training: `mlflow run` finds the environment ready and builds nothing.
The lock is flock(2): the kernel drops it when its holder dies, even on SIGKILL.

A project's python_env.yaml installs its lock (`-r requirements.lock`, mlrecipes.locks): MLflow's
environment name hashes the lock's lines too, so a new lock means a new environment, and the check
compares every locked package's installed version with its pin (a hand-edited environment fails it).
With env_manager uv, uv is given the package indexes pip is configured with (uv reads no pip.conf):
a company mirror, or on these machines the file indexes that hold torch and its CUDA libraries, serve
both managers alike; every file is still checked against the lock's hashes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from mlrecipes import locks
from mlrecipes.errors import UserError, see
from mlrecipes.schedule import Job, mlproject

ENV_MARKER = ".mlrecipes-verified"  # written into an environment once it has been verified

def env_dir_for(job: Job) -> Path:
    """The directory `mlflow run` will use for this job's environment (MLflow's own naming)."""
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _get_mlflow_virtualenv_root, _get_virtualenv_name

    python_env = _PythonEnv.from_yaml(job.project_dir / _python_env_file(job))
    root = Path(job.env_root or _get_mlflow_virtualenv_root())
    return root / _get_virtualenv_name(python_env, job.project_dir)


def _python_env_file(job: Job) -> str:
    spec = mlproject(job.project_dir)
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
# the top-level module of each one asked for (argv[2]; all without it) imports. A half-finished
# install fails one of the two.
_CHECK_ENV = r"""
import importlib, importlib.metadata as md, json, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
tops = {}
for module, dists in md.packages_distributions().items():
    for d in dists:
        tops.setdefault(norm(d), []).append(module)
imported = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
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
    if modules and (imported is None or norm(name) in imported):
        try:
            importlib.import_module(modules[0])
        except BaseException as exc:
            sys.exit(f"import {modules[0]} failed: {type(exc).__name__}: {exc}")
"""


def check_env(env_dir: Path, dependencies: list[str], imported: list[str] | None = None) -> str | None:
    """None when the environment is complete, else why it is not.

    dependencies: requirement lines (a lock's, expanded); imported: the names whose module must
    import (the top-level ones: importing each of a lock's hundred packages proves little), None: all."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        return "no bin/python"
    argv = [str(python), "-c", _CHECK_ENV, json.dumps(dependencies)]
    if imported is not None:
        argv.append(json.dumps(sorted(locks.norm(n) for n in imported)))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        return (proc.stderr.strip().splitlines() or [f"check exited {proc.returncode}"])[-1]
    return None


def requirements(python_env, project_dir: Path) -> tuple[list[str], list[str] | None]:
    """(every requirement the environment must hold, the top-level names to import; None: all)."""
    deps = [str(d) for d in python_env.dependencies or []]
    expanded = locks.expand(deps, project_dir)
    tops = locks.top_level(deps, project_dir)
    return expanded, (tops if expanded != deps else None)


def pip_index_settings(python: str = sys.executable) -> dict[str, str]:
    """uv's settings for the package indexes pip is configured with (pip.conf, PIP_* variables)."""
    try:
        out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, list[str]] = {}
    for line in out.splitlines():  # global.extra-index-url='a b'  or  :env:.find-links='/opt/wheels'
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        found.setdefault(option, []).extend(value.strip().strip("'\"").split())
    env = {}
    if found.get("index-url"):
        env["UV_DEFAULT_INDEX"] = found["index-url"][-1]
    if found.get("extra-index-url"):
        env["UV_EXTRA_INDEX_URL"] = " ".join(dict.fromkeys(found["extra-index-url"]))
    if found.get("find-links"):
        env["UV_FIND_LINKS"] = ",".join(dict.fromkeys(found["find-links"]))
    if any(v.lower() in ("1", "true", "yes", "on") for v in found.get("no-index", [])):
        env["UV_NO_INDEX"] = "1"
    if env:
        # A package may be on several indexes in several versions (a file index holds one, the lock
        # pins another): take the pinned one wherever it is; its hash is checked all the same.
        env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    return env


def build_environ(job: Job) -> dict[str, str]:
    """The environment MLflow's builder runs in: ours, the job's variables, uv's settings and uv itself."""
    env = {**os.environ, **{k: str(v) for k, v in job.env.items()}}
    if job.env_manager == "uv":
        for key, value in pip_index_settings().items():
            env.setdefault(key, value)  # a UV_* the user set wins
        uv_dir = str(Path(locks.uv_binary()).parent)  # .venv/bin when nothing activated it
        env["PATH"] = os.pathsep.join(p for p in (uv_dir, env.get("PATH")) if p)
    return env


@contextmanager
def environ_replaced(env: dict[str, str]):
    """os.environ set to env for the duration (MLflow's builder and mlflow.projects.run read it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


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
    deps, imported = requirements(python_env, job.project_dir)
    with env_lock(env_dir.with_name(env_dir.name + ".lock"), say):
        if is_marked(env_dir):  # built by the job we waited for
            return env_dir
        if env_dir.exists():
            problem = check_env(env_dir, deps, imported)
            if problem is None:
                (env_dir / ENV_MARKER).write_text(f"{job.project}\n")
                return env_dir
            say(f"[jobs] environment {env_dir} is broken ({problem}): removing it to rebuild")
            shutil.rmtree(env_dir)
        say(f"[jobs] building environment {env_dir} for {job.project} with {job.env_manager} (first run: minutes)")
        with environ_replaced(build_environ(job)):
            _create_virtualenv(local_model_path=job.project_dir, python_env=python_env,
                               env_dir=env_dir, env_manager=job.env_manager)
        problem = check_env(env_dir, deps, imported)
        if problem is not None:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise UserError(f"environment for {job.project} is incomplete after building: {problem}"
                            + see("the-environment-build-failed-or-was-interrupted"))
        (env_dir / ENV_MARKER).write_text(f"{job.project}\n")
    return env_dir
