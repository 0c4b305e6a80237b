"""The authenticated tracking server (compose: `mlflow server --app-name basic-auth`), natively.

The server runs with compose/mlflow/basic_auth.ini and its admin from the environment; the
stack's job user (Airflow's, not an admin) is created by compose/mlflow/create_users.py, the
compose file's one-shot `mlflow-users` service. Checked: anonymous and wrong logins get 401, the
job user cannot administer users, a launch without credentials (or with a wrong password) ends
with one `error:` line and creates no run, and the job user trains and registers through the
launcher with no secret in the run, its artifacts, its model or the task's log.

    .venv/bin/python -m pytest -m stack tests/stack/test_native_auth.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from native import FIXTURE_DATA, REPO, assert_no_secret_leaks, tags_of

pytestmark = pytest.mark.stack

SEARCH = "/api/2.0/mlflow/experiments/search"
# Tiny and quick; the low gate lets a 600-image model register.
PARAMS = ["-P", "limit=300", "-P", "num_boost_round=10", "-P", "overrides=gate.threshold=0.1"]


def launch(server, tmp_path, env: dict, *params: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`mlrecipes run xgboost` (what the Airflow task runs) with its receipt."""
    receipt = tmp_path / "run.json"
    receipt.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlrecipes", "run", "xgboost", *params, "--receipt", str(receipt)],
        capture_output=True, text=True, cwd=tmp_path, timeout=1800,
        env={**base, "MLRECIPES_DATA_DIR": str(FIXTURE_DATA), **env},
    )
    return proc, json.loads(receipt.read_text()) if receipt.exists() else None


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_anonymous_and_wrong_logins_get_401(tracking_server):
    server = tracking_server
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200  # compose's healthcheck
    for auth in (None, (server.user[0], "wrong-password"), ("nobody", server.user[1]),
                 (server.admin[0], server.user[1])):
        resp = requests.get(f"{server.url}{SEARCH}", params={"max_results": 1}, auth=auth, timeout=10)
        assert resp.status_code == 401, (auth and auth[0], resp.status_code)
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert server.api("GET", SEARCH, auth=server.user, params={"max_results": 1}) is not None


def test_the_job_user_is_not_an_admin(tracking_server):
    server = tracking_server
    user = server.api("GET", "/api/2.0/mlflow/users/get", params={"username": server.user[0]})["user"]
    assert user["is_admin"] is False
    resp = requests.post(f"{server.url}/api/2.0/mlflow/users/create", auth=server.user, timeout=10,
                         json={"username": "intruder", "password": "intruder-password"})
    assert resp.status_code == 403
    # The one-shot script is idempotent (a restarted stack runs it again) and keeps the user plain.
    assert "exists, password updated" in server.create_users()
    user = server.api("GET", "/api/2.0/mlflow/users/get", params={"username": server.user[0]})["user"]
    assert user["is_admin"] is False


@pytest.mark.parametrize("login", ["missing", "wrong password"])
def test_a_launch_without_a_valid_login_fails_in_one_line_and_creates_no_run(tracking_server, tmp_path, login):
    server = tracking_server
    env = {"MLFLOW_TRACKING_URI": server.url}
    if login == "wrong password":
        env.update(MLFLOW_TRACKING_USERNAME=server.user[0], MLFLOW_TRACKING_PASSWORD="wrong-password")
    before = {r["info"]["run_id"] for r in server.runs()}
    proc, receipt = launch(server, tmp_path, env, *PARAMS)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "MLFLOW_TRACKING_USERNAME" in line and "MLFLOW_TRACKING_PASSWORD" in line, line
    assert line.endswith("(see docs/troubleshooting.md#the-tracking-server-asks-for-a-login)")
    assert receipt is None
    assert {r["info"]["run_id"] for r in server.runs()} == before


def test_train_py_without_a_login_fails_in_one_line_and_creates_no_run(tracking_server, tmp_path):
    """The recipe run directly (`python train.py`, in the project's environment): same line."""
    from mlrecipes.launch.envs import env_dir_for
    from mlrecipes.schedule import load_schedule

    server = tracking_server
    python = env_dir_for(load_schedule().job("xgboost")) / "bin" / "python"
    assert python.exists(), "the xgboost environment is built by the smoke tests / `make run`"
    before = {r["info"]["run_id"] for r in server.runs()}
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    proc = subprocess.run(
        [str(python), "train.py", "data.limit=300"], capture_output=True, text=True, timeout=600,
        cwd=REPO / "projects" / "xgboost",
        env={**base, "MLFLOW_TRACKING_URI": server.url, "PYTHONPATH": str(REPO / "src"),
             "MLRECIPES_DATA_DIR": str(FIXTURE_DATA)},
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line, line
    assert {r["info"]["run_id"] for r in server.runs()} == before


def test_the_job_user_trains_and_registers_and_no_secret_leaks(tracking_server, tmp_path):
    server = tracking_server
    proc, receipt = launch(server, tmp_path, server.user_env(), *PARAMS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = server.api("GET", "/api/2.0/mlflow/runs/get", params={"run_id": receipt["run_id"]})["run"]
    assert run["info"]["status"] == "FINISHED"  # created and closed over requests logged in as the job user
    name, version = tags_of(run)["registry.model"].split("/")
    registered = server.api("GET", "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version})
    assert registered["model_version"]["run_id"] == receipt["run_id"]
    # The task's log is the launcher's output (stdout + stderr), as Airflow records it.
    searched = assert_no_secret_leaks(server, receipt["run_id"], [proc.stdout, proc.stderr])
    assert any(p.endswith("/config.yaml") for p in searched) and any(p.endswith("/MLmodel") for p in searched)
