"""The launcher (mlrecipes.launch) through the `mlrecipes` CLI: runs it closes itself, real launches of a project."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import all_runs, wait_for_recipe_run

from mlrecipes import schedule
from mlrecipes.errors import EXIT_TERMINATED, EXIT_USER_ERROR
from mlrecipes.launch import envs

REPO = Path(__file__).resolve().parents[2]


def test_cli_bad_param_is_one_line_and_creates_no_run(tracking_uri):
    proc = subprocess.run([sys.executable, "-m", "mlrecipes", "run", "xgboost", "-P", "bogus=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == EXIT_USER_ERROR
    assert proc.stderr.strip().splitlines() == [
        "error: unknown parameter 'bogus' for project xgboost; valid: data, num_boost_round, "
        "learning_rate, max_depth, early_stopping_rounds, limit, promote, overrides, window, window_column, "
        "window_length, compute"]
    import mlflow

    assert mlflow.MlflowClient(tracking_uri).search_experiments(filter_string="name = 'mnist'") == []


def test_sigterm_while_waiting_for_the_env_ends_the_run_killed(tiny, tracking_uri):
    """The run `mlflow run` never got to close: the launcher closes it KILLED and exits 143."""
    import fcntl

    import mlflow

    env_dir = envs.env_dir_for(tiny.job("tiny_a"))
    lock = env_dir.with_name(env_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    receipt = Path(os.environ["MLRECIPES_SCHEDULE"]).with_name("run.json")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-m", "mlrecipes", "run", "tiny_a",
                                 "--receipt", str(receipt)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                start_new_session=True)
        lines = []
        for line in proc.stdout:  # the run exists, then prepare-env blocks on the lock
            lines.append(line)
            if "waiting for" in line:
                break
        run_id = schedule.read_receipt(receipt)["run_id"]
        assert mlflow.MlflowClient(tracking_uri).get_run(run_id).info.status == "RUNNING"
        os.killpg(proc.pid, signal.SIGTERM)  # what Airflow's on_kill does to the launcher's group
        out = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == EXIT_TERMINATED, out
    assert mlflow.MlflowClient(tracking_uri).get_run(run_id).info.status == "KILLED"
    assert schedule.read_receipt(receipt)["status"] == "KILLED"
    assert not env_dir.exists() or not envs.is_marked(env_dir)


# ---------------------------------------------------------------- launching a real project


def _launch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "MLRECIPES_DATA_DIR": str(REPO / "tests" / "fixtures")}
    return subprocess.Popen([sys.executable, "-m", "mlrecipes", "run", "xgboost", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
                            start_new_session=True)  # like Airflow's SubprocessHook


@pytest.mark.smoke
def test_a_project_failing_on_bad_input_exits_2_so_airflow_does_not_retry(tracking_uri):
    import mlflow

    proc = _launch("-P", "data=nope", "-P", "limit=300")
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == EXIT_USER_ERROR, out
    (run,) = all_runs(mlflow.MlflowClient(tracking_uri))
    assert run.info.status == "FAILED"
    assert run.data.tags["mlrecipes.exit_code"] == "2"
    assert "nope" in run.data.tags["mlrecipes.error"]  # why, in the UI


@pytest.mark.smoke
def test_sigterm_to_the_launcher_alone_reaches_train_py_and_ends_the_run_killed(tracking_uri):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    proc = _launch("-P", "limit=300", "-P", "num_boost_round=100000", "-P", "early_stopping_rounds=100000")
    try:
        run_id = wait_for_recipe_run(client, proc).info.run_id
        os.kill(proc.pid, signal.SIGTERM)  # the launcher only: it must forward to the project
        out = proc.communicate(timeout=300)[0]
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of the launch is left running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_TERMINATED, out
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"error: run {run.info.run_id} terminated" in out  # closed by train.py itself
    assert run.data.tags.get("mlrecipes.exit_code") == "143", out[-4000:]
