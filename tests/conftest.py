"""Shared fixtures: a throw-away SQLite tracking store and a real `mlflow run` helper."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DATA = REPO / "tests" / "fixtures"  # holds mnist/: 600 train + 200 test real images
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
sys.path.insert(0, str(REPO / "src"))


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


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def run_project(tracking_uri, tmp_path):
    """Run `mlflow run projects/<name> -P k=v ...` for real, with the project's own env."""

    def _run(project: str, *params: str, experiment: str = "mnist", env: dict | None = None,
             timeout: int = 1800) -> ProjectRun:
        import mlflow

        argv = [MLFLOW, "run", str(REPO / "projects" / project), "--env-manager", "virtualenv",
                "--experiment-name", experiment]
        for p in params:
            argv += ["-P", p]
        proc_env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
                    "MLRECIPES_DATA_DIR": str(FIXTURE_DATA), **(env or {})}
        client = mlflow.MlflowClient(tracking_uri)
        before = {r.info.run_id for r in _all_runs(client)}
        proc = subprocess.run(argv, capture_output=True, text=True, env=proc_env,
                              cwd=tmp_path, timeout=timeout)
        new = [r for r in _all_runs(client) if r.info.run_id not in before]
        return ProjectRun(proc.returncode, proc.stdout, proc.stderr, new[0] if new else None)

    return _run


def _all_runs(client):
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def registered_versions(tracking_uri: str, name: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    return client.search_model_versions(f"name='{name}'")
