"""Shared fixtures: a throw-away SQLite tracking store and a real `mlflow run` helper."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import FIXTURE_DATA, MLFLOW, REPO, ProjectRun, all_runs


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
        before = {r.info.run_id for r in all_runs(client)}
        proc = subprocess.run(argv, capture_output=True, text=True, env=proc_env,
                              cwd=tmp_path, timeout=timeout)
        new = [r for r in all_runs(client) if r.info.run_id not in before]
        return ProjectRun(proc.returncode, proc.stdout, proc.stderr, new[0] if new else None)

    return _run


