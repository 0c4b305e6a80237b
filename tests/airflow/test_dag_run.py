"""The xgboost DAG run end to end by Airflow (`dag.test()`), training on the tiny fixture.

Each DAG run happens in its own process (tests/airflow/run_dag.py) on the session's Airflow
metadata DB and a temporary MLflow store; the real project environment is used.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import wait_for_recipe_run

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = REPO / "tests" / "fixtures"
# Small and fast; the low gate lets a 300-image model register.
CONF = {"limit": 300, "num_boost_round": 10, "overrides": "gate.threshold=0.1"}

pytestmark = pytest.mark.smoke


def _runs(tracking_uri):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, order_by=["attributes.start_time ASC"]) if exps else []


def test_xgboost_dag_trains_registers_and_records_the_run(airflow_db, run_dag, tracking_uri):
    proc = run_dag("mlrecipes_xgboost", CONF, env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)})
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-4000:]
    result = run_dag.result(out)
    assert result["state"] == "success" and result["tasks"] == {"mlflow_run": "success"}

    (run,) = _runs(tracking_uri)
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["airflow.dag_id"] == "mlrecipes_xgboost"
    assert tags["airflow.dag_run_id"] == result["dag_run_id"]
    assert tags["airflow.task_id"] == "mlflow_run" and tags["airflow.try_number"] == "1"
    assert tags["mlrecipes.job"] == "xgboost" and tags["mlrecipes.project"] == "xgboost"
    assert tags["mlflow.source.type"] == "PROJECT" and tags["mlflow.project.env"] == "uv"
    assert params["limit"] == "300" and params["data.limit"] == "300"  # the form's values reached -P
    assert tags["gate.decision"] == "promoted"

    xcom = result["xcom"]
    assert xcom["mlflow_run_id"] == xcom["return_value"] == run.info.run_id
    assert xcom["mlflow_run_url"].endswith(f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    assert xcom["_link_MlflowRunLink"] == xcom["mlflow_run_url"]  # the task's "MLflow run" button


def test_killed_task_leaves_its_run_killed_and_the_retry_makes_a_fresh_run(
        airflow_db, run_dag, tracking_uri, schedule_file):
    # One retry, at once; everything else as configured.
    env = {"MLRECIPES_DATA_DIR": str(FIXTURE_DATA),
           "MLRECIPES_SCHEDULE": str(schedule_file(retries=1, retry_delay_minutes=0))}
    # 1000 rounds without early stopping: ~7 s of training (two cores, idle), so the kill lands
    # inside the run; with CONF's 10 rounds a loaded machine finished the run before the kill.
    proc = run_dag("mlrecipes_xgboost", {**CONF, "num_boost_round": 1000, "early_stopping_rounds": 1000}, env=env)
    try:
        # Kill once train.py runs the recipe (its tags are set after its SIGTERM handler is in).
        import mlflow

        wait_for_recipe_run(mlflow.MlflowClient(tracking_uri), proc)
        # What Airflow's supervisor does to a task it kills: SIGTERM to the task process,
        # whose handler calls the operator's on_kill.
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = run_dag.result(out)

    first, second = _runs(tracking_uri)
    assert first.info.status == "KILLED"
    assert f"error: run {first.info.run_id} terminated" in out  # closed by train.py itself
    assert first.data.tags["airflow.try_number"] == "1"
    assert second.info.status == "FINISHED" and second.info.run_id != first.info.run_id
    assert second.data.tags["airflow.try_number"] == "2"
    assert second.data.tags["airflow.dag_run_id"] == first.data.tags["airflow.dag_run_id"]
    assert result["state"] == "success"
    assert result["xcom"]["mlflow_run_id"] == second.info.run_id


def test_promote_false_from_the_form_registers_without_moving_the_champion(airflow_db, run_dag, tracking_uri):
    # A champion already in place, with a score any candidate beats: only promote=false keeps it.
    import mlflow

    from mlrecipes import registry

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run(experiment_id=mlflow.create_experiment("seed")) as seed:
        mlflow.log_metric("test_accuracy", 0.0)
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
    gate = {"metric": "test_accuracy", "direction": "maximize", "threshold": 0.0}
    registry.register_and_gate(info.model_uri, "mnist-xgboost", seed.info.run_id, {"test_accuracy": 0.0}, gate)

    proc = run_dag("mlrecipes_xgboost", {**CONF, "promote": False}, env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)})
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-4000:]
    assert run_dag.result(out)["state"] == "success"

    (run,) = [r for r in _runs(tracking_uri) if r.info.run_id != seed.info.run_id]
    assert run.info.status == "FINISHED" and run.data.params["promote"] == "false"
    assert run.data.tags["gate.decision"] == "not promoted (promote=false)"
    client = mlflow.MlflowClient(tracking_uri)
    new = client.get_model_version("mnist-xgboost", "2")
    assert new.run_id == run.info.run_id and new.tags["gate.passed"] == "true"
    assert str(client.get_model_version_by_alias("mnist-xgboost", "champion").version) == "1"
    assert [m["version"] for m in registry.history(client, "mnist-xgboost")] == ["1"]


def test_weekly_lightgbm_sweep_dag_runs_trials_and_registers_the_best(airflow_db, run_dag, tracking_uri):
    # The example sweep job of conf/schedule.yaml, with the trigger form's trials and budget.
    conf = {"trials": 2, "budget_minutes": 30, "limit": 300,
            "overrides": "model.num_boost_round=5 gate.threshold=0.1"}
    proc = run_dag("mlrecipes_lightgbm_sweep", conf, env={"MLRECIPES_DATA_DIR": str(FIXTURE_DATA)})
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-4000:]
    result = run_dag.result(out)
    assert result["state"] == "success" and result["tasks"] == {"mlflow_run": "success"}

    runs = _runs(tracking_uri)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and parent.data.tags["mlrecipes.job"] == "lightgbm_sweep"
    assert parent.data.params["trials"] == "2" and parent.data.params["budget_minutes"] == "30"
    assert parent.data.params["sweep.timeout_minutes"] == "30.0"
    # the study is named after the DAG run: an Airflow retry resumes it, next week's run starts afresh
    assert parent.data.tags["mlrecipes.sweep.study"].endswith(result["dag_run_id"])
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    assert all(t.data.tags["airflow.dag_run_id"] == result["dag_run_id"] for t in trials)
    assert result["xcom"]["mlflow_run_id"] == parent.info.run_id

    import mlflow

    (version,) = mlflow.MlflowClient(tracking_uri).search_model_versions("name='mnist-lightgbm'")
    assert version.run_id == parent.data.tags["mlrecipes.sweep.best_run_id"]
