"""What the launcher settles before it builds anything (mlrecipes.launch.preflight): paths and data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlrecipes import schedule, store
from mlrecipes.errors import EXIT_USER_ERROR, UserError
from mlrecipes.launch import preflight, project

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def test_relative_sqlite_uri_is_made_absolute_against_the_callers_directory(tmp_path):
    base = tmp_path / "here"
    assert store.absolute_tracking_uri("sqlite:///mlflow.db", base) == f"sqlite:///{base / 'mlflow.db'}"
    assert (store.absolute_tracking_uri("sqlite:///../x/m.db?timeout=30", base)
            == f"sqlite:///{tmp_path / 'x' / 'm.db'}?timeout=30")
    for unchanged in ("sqlite:////abs/m.db", "sqlite:///:memory:", "http://mlflow:5000", "databricks"):
        assert store.absolute_tracking_uri(unchanged, base) == unchanged


def test_child_env_resolves_relative_data_dir_and_store_from_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLRECIPES_DATA_DIR", "../shared/data")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    env = project.child_env(schedule.load_schedule().job("xgboost"))
    assert env["MLRECIPES_DATA_DIR"] == str(tmp_path.parent / "shared" / "data")
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_only_mnist_jobs_are_checked_and_a_relative_fixture_dir_passes(monkeypatch):
    monkeypatch.chdir(REPO / "tests")
    monkeypatch.setenv("MLRECIPES_DATA_DIR", "fixtures")  # relative to the caller, not the project
    loaded = schedule.load_schedule()
    tables = schedule.Job(name="tables", project="xgboost", params={"data": "breast_cancer"})
    pairs = [(job, project.child_env(job)) for job in [*loaded.existing(), tables]]
    assert preflight.check_data(pairs) == [FIXTURES / "mnist"]  # six MNIST jobs, one directory
    assert preflight.check_data([(tables, project.child_env(tables))]) == []


def test_data_dir_override_is_what_gets_checked(tmp_path):
    job = schedule.Job(name="x", project="lightgbm",
                       params={"overrides": f"data.dir={tmp_path} data.download=false"})
    with pytest.raises(UserError, match=f"MNIST not found in {tmp_path / 'mnist'} .*download disabled"):
        preflight.check_data([(job, dict(os.environ))])


def _run_all(tmp_path, overrides: str, data_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    doc["defaults"]["env_root"] = str(tmp_path / "envs")  # a build would show up here
    doc["defaults"]["params"] = {"overrides": overrides}
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "MLRECIPES_SCHEDULE": str(path), "MLRECIPES_DATA_DIR": str(data_dir),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mlrecipes", "run", "--all"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("overrides, why", [
    ("data.download=false", "download disabled"),
    ("data.mirrors=[http://127.0.0.1:9/mnist]", "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz"),
])
def test_run_all_without_data_fails_in_seconds_before_any_environment(tmp_path, overrides, why):
    empty = tmp_path / "data"
    proc, seconds = _run_all(tmp_path, overrides, empty)
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: MNIST not found in {empty / 'mnist'} and could not be downloaded (")
    assert why in line and "set MLRECIPES_DATA_DIR" in line
    assert seconds < 30, seconds
    assert not (tmp_path / "envs").exists()  # no project environment was built or checked
    assert "MLflow run" not in proc.stdout and not (tmp_path / "mlflow.db").exists()  # no run created


@pytest.mark.smoke  # a real launch of the xgboost project
def test_launch_from_elsewhere_with_relative_data_dir_and_store(tmp_path):
    import mlflow

    caller = tmp_path / "caller"
    caller.mkdir()
    env = {**os.environ, "MLRECIPES_DATA_DIR": os.path.relpath(FIXTURES, caller),
           "MLFLOW_TRACKING_URI": "sqlite:///runs/mlflow.db"}
    proc = subprocess.run([sys.executable, "-m", "mlrecipes", "run", "xgboost", "-P", "limit=300",
                           "-P", "num_boost_round=2", "-P", "overrides=gate.threshold=0"],
                          capture_output=True, text=True, cwd=caller, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{caller / 'runs' / 'mlflow.db'}")  # the caller's store
    (run,) = client.search_runs([client.get_experiment_by_name("mnist").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["data.rows.train"] == str(int(300 * 0.9))  # the fixture, found
    assert not list((REPO / "projects" / "xgboost").glob("runs"))  # nothing inside the project dir
