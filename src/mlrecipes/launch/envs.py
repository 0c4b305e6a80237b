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
"""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

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
            raise UserError(f"environment for {job.project} is incomplete after building: {problem}"
                            + see("the-environment-build-failed-or-was-interrupted"))
        (env_dir / ENV_MARKER).write_text(f"{job.project}\n")
    return env_dir
