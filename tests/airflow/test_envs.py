"""Environment safety (mlrecipes.launch.envs): build, check, mark, rebuild, the per-environment lock.

These tests build real MLflow virtualenvs (MLflow's own builder, pyenv's Python 3.11.7) in a
temporary env root, for a tiny project whose one dependency is a wheel made here (the `tiny`
fixture), so pip installs offline and in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlrecipes.launch import envs

REPO = Path(__file__).resolve().parents[2]


def _site_packages(env_dir: Path) -> Path:
    return next(env_dir.glob("lib/python3.11/site-packages"))


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_is_built_checked_and_marked(tiny):
    said = []
    job = tiny.job("tiny_a")
    env_dir = envs.prepare_env(job, say=said.append)
    assert env_dir == envs.env_dir_for(job) and env_dir.parent == Path(job.env_root)
    assert envs.is_marked(env_dir)
    assert envs.check_env(env_dir, ["tinydep==0.1"]) is None
    assert any("building environment" in line for line in said)
    # The other job of the same project uses the same environment, warm: nothing to do.
    said.clear()
    assert envs.prepare_env(tiny.job("tiny_b"), say=said.append) == env_dir
    assert said == []


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_half_installed_env_is_detected_and_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = envs.prepare_env(job)
    # What an install killed half-way leaves: the directory, no marker, a package missing.
    (env_dir / envs.ENV_MARKER).unlink()
    shutil.rmtree(_site_packages(env_dir) / "tinydep")
    for dist_info in _site_packages(env_dir).glob("tinydep-*.dist-info"):
        shutil.rmtree(dist_info)
    assert "tinydep is not installed" in envs.check_env(env_dir, ["tinydep==0.1"])
    said = []
    assert envs.prepare_env(job, say=said.append) == env_dir
    assert any("is broken (tinydep is not installed)" in line for line in said)
    assert envs.is_marked(env_dir) and envs.check_env(env_dir, ["tinydep==0.1"]) is None


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_with_a_package_that_fails_to_import_is_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = envs.prepare_env(job)
    (env_dir / envs.ENV_MARKER).unlink()
    (_site_packages(env_dir) / "tinydep" / "__init__.py").write_text("VALUE = (\n")  # truncated file
    said = []
    envs.prepare_env(job, say=said.append)
    assert any("import tinydep failed: SyntaxError" in line for line in said)
    assert envs.check_env(env_dir, ["tinydep==0.1"]) is None


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_dir_without_python_is_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = envs.env_dir_for(job)
    env_dir.mkdir(parents=True)  # killed right after `python -m venv` started
    said = []
    envs.prepare_env(job, say=said.append)
    assert any("is broken (no bin/python)" in line for line in said)
    assert envs.is_marked(env_dir)


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_healthy_unmarked_env_is_kept_not_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = envs.prepare_env(job)
    (env_dir / envs.ENV_MARKER).unlink()  # e.g. built by a plain `mlflow run` before the launcher
    sentinel = env_dir / "sentinel"
    sentinel.write_text("still here")
    said = []
    envs.prepare_env(job, say=said.append)
    assert said == [] and sentinel.exists() and envs.is_marked(env_dir)


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_two_cold_jobs_of_one_env_build_it_once(tiny, tmp_path):
    """Two jobs start while the env is being built: the second waits, then reuses it."""
    import fcntl

    env_dir = envs.env_dir_for(tiny.job("tiny_a"))
    lock = env_dir.with_name(env_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    procs = []
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # stands for a third job in the middle of a build
        for name in ("tiny_a", "tiny_b"):
            procs.append(subprocess.Popen([sys.executable, "-m", "mlrecipes", "prepare-env", name],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=REPO))
        for proc in procs:  # both are blocked on the lock before it is released
            assert "waiting for" in proc.stdout.readline()
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        outputs.append(out)
    assert sum("building environment" in out for out in outputs) == 1
    assert envs.is_marked(env_dir) and envs.check_env(env_dir, ["tinydep==0.1"]) is None


# ---------------------------------------------------------------- locks and uv (#37)


def _lock_tiny(tiny, tmp_path, build_pip: bool = True) -> Path:
    """The tiny project installs a lock (`-r requirements.lock`, the wheel's real hash) like the real projects."""
    import hashlib

    project = Path(tiny.job("tiny_a").project_dir)
    wheel = tmp_path / "wheels" / "tinydep-0.1-py3-none-any.whl"
    (project / "requirements.in").write_text("tinydep==0.1\n")
    (project / "requirements.lock").write_text(
        f"tinydep==0.1 \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n")
    build = "build_dependencies:\n  - pip\n" if build_pip else ""
    (project / "python_env.yaml").write_text(f'python: "3.11.7"\n{build}dependencies:\n  - -r requirements.lock\n')
    return project


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_locked_env_is_checked_against_the_lock(tiny, tmp_path):
    project = _lock_tiny(tiny, tmp_path)
    job = tiny.job("tiny_a")
    env_dir = envs.prepare_env(job)
    assert envs.is_marked(env_dir)
    # The environment's name hashes the lock: a new lock never reuses the old environment.
    lock = project / "requirements.lock"
    lock.write_text(lock.read_text() + "# a new lock\nextra==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert envs.env_dir_for(job) != env_dir
    lock.write_text(lock.read_text().split("# a new lock")[0])
    assert envs.env_dir_for(job) == env_dir
    # A package at another version than its pin (edited by hand) is found by the check.
    dist_info = next(_site_packages(env_dir).glob("tinydep-0.1.dist-info"))
    metadata = dist_info / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.1", "Version: 0.2"))
    deps, imported = envs.requirements(_python_env(project), project)
    assert deps == ["tinydep==0.1"] and imported == ["tinydep"]
    assert envs.check_env(env_dir, deps, imported) == "tinydep is 0.2, not 0.1"


def _python_env(project: Path):
    from mlflow.utils.environment import _PythonEnv

    return _PythonEnv.from_yaml(project / "python_env.yaml")


def test_uv_is_given_the_indexes_pip_is_configured_with(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///srv/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    settings = envs.pip_index_settings()
    assert str(tmp_path) in settings["UV_FIND_LINKS"].split(",")
    assert "file:///srv/simple" in settings["UV_EXTRA_INDEX_URL"].split()
    assert settings["UV_NO_INDEX"] == "1" and settings["UV_INDEX_STRATEGY"] == "unsafe-best-match"


@pytest.mark.smoke  # builds a real (tiny) virtualenv with uv
def test_uv_builds_the_locked_env_offline_from_pips_indexes(tiny, tmp_path, monkeypatch):
    """env_manager uv: no pyenv step (uv takes 3.11.7 from the PATH); the wheel comes from pip's find-links."""
    import dataclasses

    for key in [k for k in __import__("os").environ if k.startswith("UV_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    _lock_tiny(tiny, tmp_path, build_pip=False)  # no index: uv could not fetch pip itself
    job = dataclasses.replace(tiny.job("tiny_a"), env_manager="uv")
    said = []
    env_dir = envs.prepare_env(job, say=said.append)
    assert any("with uv" in line for line in said)
    assert envs.is_marked(env_dir) and envs.check_env(env_dir, ["tinydep==0.1"]) is None
    assert (env_dir / "pyvenv.cfg").read_text().count("uv =") == 1  # made by uv, not python -m venv
