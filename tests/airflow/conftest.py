"""Airflow tests run the real Airflow against a throw-away AIRFLOW_HOME (SQLite metadata DB).

Airflow reads its configuration when first imported, so the environment is set here, at
collection time, before any test module imports airflow.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

from mlrecipes.schedule import load_schedule

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "airflow" / "dags"
SCHEDULE = REPO / "conf" / "schedule.yaml"
FIXTURE_DATA = REPO / "tests" / "fixtures"

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="mlrecipes-airflow-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update({
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
})
os.environ.pop("MLRECIPES_SCHEDULE", None)
os.environ.pop("MLRECIPES_PROFILE", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB in the session's AIRFLOW_HOME (what `dag.test()` needs)."""
    proc = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return AIRFLOW_HOME


@pytest.fixture
def schedule_file(tmp_path):
    """Write a copy of the real schedule with `changes` applied to its defaults; returns the path."""

    def _write(**changes) -> Path:
        doc = yaml.safe_load(SCHEDULE.read_text())
        doc["defaults"].update(changes)
        path = tmp_path / "schedule.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    return _write


@pytest.fixture
def run_dag():
    """Run `dag.test()` of one DAG in its own process (tests/airflow/run_dag.py).

    `run_dag(dag_id, conf)` returns a Popen (stdout piped, own session); `run_dag.result(stdout)`
    parses the JSON line it prints: dag run id, states, XComs.
    """

    def _start(dag_id: str, conf: dict, env: dict | None = None, logical_date: str | None = None) -> subprocess.Popen:
        argv = [sys.executable, str(Path(__file__).with_name("run_dag.py")), dag_id, json.dumps(conf),
                *([logical_date] if logical_date else [])]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})}, start_new_session=True)

    _start.result = _parse_result
    return _start


def _parse_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def _tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel `tinydep==0.1` (module `tinydep`), so pip installs it offline."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinydep-0.1-py3-none-any.whl"
    files = {
        "tinydep/__init__.py": "VALUE = 42\n",
        "tinydep-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 0.1\n",
        "tinydep-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n",
        "tinydep-0.1.dist-info/top_level.txt": "tinydep\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinydep-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("tinydep-0.1.dist-info/RECORD", record)
    return wheel


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A schedule with two jobs sharing one tiny project, its env root in tmp_path."""
    projects = tmp_path / "projects"
    project = projects / "tiny"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(
        "name: tiny\npython_env: python_env.yaml\nentry_points:\n  main:\n"
        "    parameters: {n: {type: float, default: 1}}\n    command: python -c 'import tinydep'\n")
    (project / "python_env.yaml").write_text(
        'python: "3.11.7"\nbuild_dependencies:\n  - pip\ndependencies:\n  - tinydep==0.1\n')
    wheels = _tiny_wheel(tmp_path / "wheels").parent
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(yaml.safe_dump({
        "defaults": {"projects_dir": str(projects), "env_root": str(tmp_path / "envs")},
        "profiles": {"local": {}},
        "jobs": {"tiny_a": {"project": "tiny"}, "tiny_b": {"project": "tiny"}},
    }))
    # pip reads these from the environment: install from the local wheel only, no index.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("MLRECIPES_SCHEDULE", str(schedule))
    return load_schedule()
