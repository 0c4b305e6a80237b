"""Locked environments (mlrecipes.locks): every lock matches its top-level list; no network, no build."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlrecipes import locks

REPO = Path(__file__).resolve().parents[2]
SOURCES = locks.sources(REPO)


@pytest.mark.parametrize("source", SOURCES, ids=[str(s.lock.relative_to(REPO)) for s in SOURCES])
def test_every_lock_matches_its_top_level_list(source):
    assert locks.problems(source) == []


def test_every_project_installs_its_lock():
    """python_env.yaml installs the lock and nothing beside it: a pin there would bypass the lock."""
    projects = sorted(p.parent for p in REPO.glob("projects/*/MLproject"))
    assert projects
    for project in projects:
        env = yaml.safe_load((project / "python_env.yaml").read_text())
        assert len(env["dependencies"]) == 1, project.name
        lock = locks.project_lock(project)
        assert lock is not None and lock.parent == project and lock.name.startswith("requirements"), project.name
        assert env["python"] == locks.PYTHON_VERSION
        assert any(s.lock == lock for s in SOURCES), project.name


def test_the_gpu_list_differs_from_the_cpu_list_only_in_its_build():
    cpu = locks.pins((REPO / "projects/xgboost/requirements.in").read_text())
    gpu = locks.pins((REPO / "projects/xgboost/requirements-gpu.in").read_text())
    assert cpu.pop("xgboost-cpu") == gpu.pop("xgboost")
    assert cpu == gpu
    cpu_lock = locks.pins((REPO / "projects/xgboost/requirements.lock").read_text())
    assert not any(n.startswith("nvidia-") for n in cpu_lock)  # no NCCL for GPUs a CPU worker lacks


def test_dev_lock_keeps_the_run_lock_versions():
    run = locks.pins((REPO / "requirements/run.lock").read_text())
    dev = locks.pins((REPO / "requirements/dev.lock").read_text())
    assert {n: dev[n] for n in run} == run


def _source(tmp_path, text="mlflow==3.17.2  # why\nhydra-core==1.3.8\n"):
    source = tmp_path / "requirements.in"
    source.write_text(text)
    s = locks.Source(source, source.with_suffix(".lock"))
    s.lock.write_text(locks.HEADER.format(source=source.name, digest=s.digest()) + "\n"
                      "hydra-core==1.3.8 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via -r requirements.in\n"
                      "mlflow==3.17.2 \\\n    --hash=sha256:" + "b" * 64 + "\n")
    return s


def test_a_changed_top_level_list_is_caught(tmp_path):
    s = _source(tmp_path)
    assert locks.problems(s) == []
    s.path.write_text("mlflow==3.17.2  # a comment edit needs no new lock\n\nhydra-core==1.3.8\n")
    assert locks.problems(s) == []
    s.path.write_text("mlflow==3.17.3\nhydra-core==1.3.8\n")
    found = locks.problems(s)
    assert any("not compiled from the current requirements.in" in p for p in found)
    assert any("mlflow is 3.17.2, requirements.in asks for 3.17.3" in p for p in found)


def test_a_lock_line_without_pin_or_hash_is_caught(tmp_path):
    s = _source(tmp_path)
    s.lock.write_text(s.lock.read_text() + "numpy>=2\nscipy==1.16.0\n")
    found = locks.problems(s)
    assert any("not pinned with ==: numpy>=2" in p for p in found)
    assert any("no hash: scipy==1.16.0" in p for p in found)
    s.lock.unlink()
    assert "missing" in locks.problems(s)[0]


def test_a_lock_expands_to_its_pins_and_imports_only_the_top_level(tmp_path):
    s = _source(tmp_path)
    deps = ["-r requirements.lock"]
    assert locks.expand(deps, tmp_path) == ["hydra-core==1.3.8", "mlflow==3.17.2"]
    assert locks.top_level(deps, tmp_path) == ["mlflow", "hydra-core"]
    assert locks.top_level(["tinydep==0.1"], tmp_path) == ["tinydep"]
    assert s.lock.is_file()


def test_the_run_is_tagged_with_its_lock(tmp_path):
    import hashlib

    assert locks.run_tags(tmp_path) == {}  # no python_env.yaml: no lock to name
    lock = REPO / "projects/lightgbm/requirements.lock"
    assert locks.run_tags(lock.parent) == {
        "mlrecipes.env.lock": "requirements.lock",
        "mlrecipes.env.lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest()}


def test_a_new_lock_is_a_new_mlflow_environment(tmp_path):
    """MLflow names a cached environment by python_env.yaml with its `-r` files expanded: a lock change
    can never reuse an environment built from the old lock."""
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.virtualenv import _get_virtualenv_name

    s = _source(tmp_path)
    (tmp_path / "python_env.yaml").write_text('python: "3.11.7"\ndependencies:\n  - -r requirements.lock\n')
    env = _PythonEnv.from_yaml(tmp_path / "python_env.yaml")
    before = _get_virtualenv_name(env, tmp_path)
    s.lock.write_text(s.lock.read_text().replace("mlflow==3.17.2", "mlflow==3.17.3"))
    assert _get_virtualenv_name(env, tmp_path) != before
