"""Helpers shared by the test packages (conftest modules cannot be imported by name:
tests/airflow has its own conftest, and both would be the module `conftest`)."""

from __future__ import annotations

import sys
import time
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
