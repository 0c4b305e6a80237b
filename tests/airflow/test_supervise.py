"""Process supervision (mlrecipes.launch.supervise) through the real launcher: memory limit, SIGKILL of
train.py, stale-run reaping, and eight launches at once on a brand-new SQLite store."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import all_runs, wait_for_recipe_run

from mlrecipes import schedule
from mlrecipes.errors import EXIT_USER_ERROR, UserError

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TINY = ["-P", "limit=300", "-P", "num_boost_round=2"]


def _launcher(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "MLRECIPES_DATA_DIR": str(FIXTURES), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "mlrecipes", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, start_new_session=True,
                            **kwargs)


def _registered(client) -> list:
    return client.search_registered_models()


def _stale_run(client, experiment_id: str, job: str, age_s: float):
    """A RUNNING run whose process is gone: started `age_s` ago, last system metric then."""
    from mlflow.entities import Metric

    then = int((time.time() - age_s) * 1000)
    run = client.create_run(experiment_id, start_time=then, tags={"mlrecipes.job": job})
    client.log_batch(run.info.run_id, metrics=[Metric("system/cpu_utilization_percentage", 12.0, then, 0)])
    return run.info.run_id, then


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- bad input


def test_bad_memory_limit_or_age_is_one_line_and_exit_2(tracking_uri, tmp_path):
    for argv, line in [
        (["run", "xgboost", "--memory-limit-mb", "0"], "error: --memory-limit-mb '0' is not a positive number of MB"),
        (["run", "xgboost", "--memory-limit-mb", "2GB"],
         "error: --memory-limit-mb '2GB' is not a positive number of MB"),
        (["reap", "--older-than", "ten minutes"],
         "error: age 'ten minutes' is not a duration: use e.g. 90s, 10m, 2h or 1d"),
        (["reap", "--older-than", "0m"], "error: age '0m' is not a duration: use e.g. 90s, 10m, 2h or 1d"),
    ]:
        proc = _launcher(*argv)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == EXIT_USER_ERROR, (argv, out, err)
        assert err.strip().splitlines() == [line], argv
    import mlflow

    assert all_runs(mlflow.MlflowClient(tracking_uri)) == []  # nothing was started
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    doc["jobs"]["xgboost"]["memory_limit_mb"] = -5
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(UserError, match=r"schedule job 'xgboost': memory_limit_mb -5 is not a positive number"):
        schedule.load_schedule(bad)


# ---------------------------------------------------------------- stale runs


def test_reap_ends_stale_running_runs_and_keeps_fresh_ones(tracking_uri):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("mnist")
    stale, stale_beat = _stale_run(client, exp, "xgboost", age_s=3600)
    fresh, _ = _stale_run(client, exp, "xgboost", age_s=3600)  # started long ago, but ...
    client.log_metric(fresh, "system/cpu_utilization_percentage", 50.0, step=1)  # ... beating now
    old_start = int((time.time() - 7200) * 1000)
    silent = client.create_run(exp, start_time=old_start).info.run_id  # no metrics at all: its start
    young = client.create_run(exp).info.run_id  # just started, no heartbeat yet: not lost
    done, _ = _stale_run(client, exp, "xgboost", age_s=3600)
    client.set_terminated(done, "FINISHED")

    proc = _launcher("reap", "--older-than", "10m", env={"MLFLOW_TRACKING_URI": tracking_uri})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "2 stale run(s) ended FAILED" in out
    got = {r: client.get_run(r) for r in (stale, fresh, silent, young, done)}
    assert got[stale].info.status == "FAILED"
    assert got[stale].data.tags["mlrecipes.error"] == f"lost: no heartbeat since {_iso(stale_beat)}"
    assert got[silent].info.status == "FAILED"
    assert got[silent].data.tags["mlrecipes.error"] == f"lost: no heartbeat since {_iso(old_start)}"
    assert got[fresh].info.status == "RUNNING" and got[young].info.status == "RUNNING"
    assert got[done].info.status == "FINISHED" and "mlrecipes.error" not in got[done].data.tags


def test_a_retry_closes_the_runs_its_lost_earlier_tries_left_running(tracking_uri):
    import mlflow

    from mlrecipes.launch.reap import reap_superseded

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("mnist")
    task = {"airflow.dag_id": "mlrecipes_xgboost", "airflow.dag_run_id": "manual__1", "airflow.task_id": "mlflow_run"}

    def run(try_number: int, **other) -> str:
        tags = {**task, "airflow.try_number": str(try_number), **other}
        return client.create_run(exp, tags=tags).info.run_id

    lost = run(1)  # its worker died: still RUNNING
    killed = run(2)
    client.set_terminated(killed, "KILLED")
    other_dag_run = run(1, **{"airflow.dag_run_id": "manual__2"})
    later = run(4)  # a later try never goes
    reaped = reap_superseded(client, exp, {**task, "airflow.try_number": "3"}, say=lambda *_: None)
    assert reaped == [lost]
    lost_run = client.get_run(lost)
    assert lost_run.info.status == "FAILED"
    assert lost_run.data.tags["mlrecipes.error"] == "lost: try 1 was given up by Airflow, retried as try 3"
    assert [client.get_run(r).info.status for r in (killed, other_dag_run, later)] == ["KILLED", "RUNNING", "RUNNING"]
    assert reap_superseded(client, exp, {}, say=lambda *_: None) == []  # not under Airflow: nothing


# ---------------------------------------------------------------- memory limit, SIGKILL (real launches)


@pytest.mark.smoke
def test_memory_limit_stops_the_tree_and_fails_the_run_with_the_reason(tracking_uri):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.create_experiment("mnist")
    # Lost runs: of this job and older than its timeout (reaped by the launch), of another job (not).
    lost, lost_beat = _stale_run(client, exp, "xgboost", age_s=3 * 3600)
    other, _ = _stale_run(client, exp, "lightgbm", age_s=3 * 3600)

    # 150 MB: importing mlflow + xgboost in train.py alone takes more.
    proc = _launcher("run", "xgboost", *TINY, "--memory-limit-mb", "150")
    out, err = proc.communicate(timeout=900)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the launch is left running
    assert proc.returncode == EXIT_USER_ERROR, out + err
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"error: (memory limit 150 MB exceeded \(peak (\d+) MB\)) "
                         r"\(see docs/troubleshooting.md#a-task-was-killed-for-memory\)", last)
    assert match and int(match.group(2)) > 150, err[-3000:]
    (run,) = [r for r in all_runs(client) if r.info.run_id not in (lost, other)]
    assert run.info.status == "FAILED"
    assert run.data.tags["mlrecipes.error"] == match.group(1)  # the reason, without the pointer
    assert run.data.tags["mlrecipes.exit_code"] == "2"
    assert _registered(client) == []
    assert client.get_run(lost).info.status == "FAILED"
    assert client.get_run(lost).data.tags["mlrecipes.error"] == f"lost: no heartbeat since {_iso(lost_beat)}"
    assert client.get_run(other).info.status == "RUNNING"


@pytest.mark.smoke
def test_sigkill_of_train_py_fails_the_run_with_the_reason_and_a_retryable_exit(tracking_uri):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    proc = _launcher("run", "xgboost", "-P", "limit=300", "-P", "num_boost_round=100000",
                     "-P", "early_stopping_rounds=100000")
    try:
        run_id = wait_for_recipe_run(client, proc).info.run_id
        (train,) = [p for p in psutil.Process(proc.pid).children(recursive=True)
                    if any(part.endswith("train.py") for part in p.cmdline())]
        train.send_signal(signal.SIGKILL)  # what the kernel's OOM killer sends
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode not in (0, EXIT_USER_ERROR), out + err  # Airflow retries
    assert proc.returncode == 128 + signal.SIGKILL
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    reason = run.data.tags["mlrecipes.error"]
    match = re.fullmatch(r"killed by SIGKILL, likely out of memory; peak RSS (\d+) MB", reason)
    assert match and int(match.group(1)) > 0, reason
    assert err.strip().splitlines()[-1] == f"error: {reason} (see docs/troubleshooting.md#a-task-was-killed-for-memory)"
    assert _registered(client) == []


# ---------------------------------------------------------------- concurrency


@pytest.mark.smoke
def test_eight_launches_at_once_on_a_brand_new_sqlite_store(tmp_path):
    import mlflow

    store = tmp_path / "fresh" / "mlflow.db"  # does not exist yet: first-time schema creation races
    uri = f"sqlite:///{store}"
    procs = [_launcher("run", "xgboost", *TINY, "-P", f"overrides=seed={i} gate.threshold=0",
                       env={"MLFLOW_TRACKING_URI": uri}) for i in range(8)]
    outputs = [p.communicate(timeout=1800) for p in procs]
    logs = ["".join(o) for o in outputs]
    assert [p.returncode for p in procs] == [0] * 8, "\n=====\n".join(log[-2000:] for log in logs)
    assert not any("database is locked" in log for log in logs)
    client = mlflow.MlflowClient(uri)
    runs = all_runs(client)
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}
    versions = client.search_model_versions("name='mnist-xgboost'")
    assert sorted(int(v.version) for v in versions) == list(range(1, 9))
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
    champion = client.get_model_version_by_alias("mnist-xgboost", "champion")
    accuracy = {v.version: float(v.tags["test_accuracy"]) for v in versions}
    promoted = [v.version for v in versions if v.tags["gate.decision"] == "promoted"]
    assert champion.version in promoted
    assert accuracy[champion.version] == max(accuracy.values())  # no better version lost the alias
