"""The DAG folder, parsed by Airflow's own DagBag: what the config says is what Airflow schedules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mlrecipes.schedule import load_schedule, project_params

DAGS = Path(__file__).resolve().parents[2] / "airflow" / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def schedule():
    return load_schedule()


def _validate(dag, conf: dict):
    """What Airflow does with a trigger's conf before it creates the dag run (on the stored DAG)."""
    from airflow.serialization.serialized_objects import DagSerialization

    stored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    return stored.params.deep_merge(conf).validate()


def test_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    # One DAG file for every job; mlrecipes_schedule_check.py, without DAGs, only reports bad jobs.
    assert {s.file: s.dag_num for s in dagbag.dagbag_stats} == {
        "mlrecipes_dags.py": len(dagbag.dags), "mlrecipes_schedule_check.py": 0}


def test_one_dag_per_existing_job(dagbag, schedule):
    expected = {f"mlrecipes_{j.name}" for j in schedule.existing()}
    assert set(dagbag.dags) == expected
    # The tree models and both deep-learning projects are present in this repository.
    assert {"mlrecipes_xgboost", "mlrecipes_lightgbm", "mlrecipes_tf_mnist_cnn",
            "mlrecipes_torch_mnist_mlp"} <= expected


def test_schedules_and_task_settings_match_the_config(dagbag, schedule):
    for job in schedule.existing():
        dag = dagbag.dags[f"mlrecipes_{job.name}"]
        if job.params.get("window_column"):  # on a time column: a run covers the interval that just ended
            from airflow.sdk import CronDataIntervalTimetable

            assert dag.schedule == CronDataIntervalTimetable(job.schedule, timezone="UTC")
        else:
            assert dag.schedule == job.schedule
        assert dag.catchup is False and dag.max_active_runs == 1
        task = dag.get_task("mlflow_run")
        assert task.job == job.name
        assert task.retries == job.retries
        assert task.retry_delay == timedelta(minutes=job.retry_delay_minutes)
        assert task.retry_exponential_backoff == job.retry_backoff
        assert task.max_retry_delay == timedelta(minutes=job.max_retry_delay_minutes)
        assert task.execution_timeout == timedelta(minutes=job.timeout_minutes)
        assert task.pool == job.pool
        assert [link.name for link in task.operator_extra_links] == ["MLflow run"]


def test_deep_learning_jobs_share_a_one_slot_pool(dagbag, schedule):
    dl = [j for j in schedule.existing() if j.project in ("tf_mnist", "torch_mnist")]
    assert dl and {j.pool for j in dl} == {"mlrecipes_dl"}
    assert schedule.pools["mlrecipes_dl"]["slots"] == 1
    assert dagbag.dags["mlrecipes_xgboost"].get_task("mlflow_run").pool == "default_pool"


def test_params_are_the_projects_params_with_the_jobs_defaults(dagbag, schedule):
    for job in schedule.existing():
        dag = dagbag.dags[f"mlrecipes_{job.name}"]
        declared = project_params(job)
        assert set(dag.params) == set(declared)
        for name, spec in declared.items():
            want = job.params.get(name, spec.get("default"))
            assert dag.params[name] == want, (job.name, name)
        assert _validate(dag, {})  # the defaults themselves are valid
    assert dagbag.dags["mlrecipes_tf_mnist_mlp"].params["arch"] == "mlp"
    assert dagbag.dags["mlrecipes_tf_mnist_cnn"].params["arch"] == "cnn"


def test_arch_is_an_enum_with_readable_labels(dagbag):
    schema = dagbag.dags["mlrecipes_torch_mnist_cnn"].params.get_param("arch").schema
    assert schema["enum"] == ["mlp", "cnn"]
    assert set(schema["values_display"]) == {"mlp", "cnn"}


def test_schema_accepts_a_good_conf(dagbag):
    dag = dagbag.dags["mlrecipes_tf_mnist_cnn"]
    values = _validate(dag, {"arch": "mlp", "epochs": 3, "learning_rate": 0.01,
                             "overrides": "seed=7 +train.extra=1 optimizer.name=adam"})
    assert values["arch"] == "mlp" and values["epochs"] == 3


@pytest.mark.parametrize("conf", [
    {"arch": "resnet"},
    {"epochs": -1},
    {"epochs": 100000},
    {"epochs": 2.5},
    {"learning_rate": -0.1},
    {"limit": -1},
])
def test_schema_rejects_bad_values(dagbag, conf):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(dagbag.dags["mlrecipes_tf_mnist_cnn"], conf)


@pytest.mark.parametrize("overrides", [
    "seed=1; rm -rf ~",
    "seed=$(whoami)",
    "seed=`id`",
    "seed=1 && echo",
    "seed=1 | cat",
    "seed='1'",
    'seed="1"',
    "seed=1 > /tmp/x",
    "seed=*",
    "seed=1\nrm",
    "just words",
])
def test_schema_rejects_overrides_with_shell_characters(dagbag, overrides):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(dagbag.dags["mlrecipes_xgboost"], {"overrides": overrides})


def test_gbt_numbers_have_bounds(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    for job, conf in (("xgboost", {"num_boost_round": -1}), ("xgboost", {"max_depth": 100}),
                      ("xgboost", {"data": "imagenet"}), ("lightgbm", {"num_leaves": 1})):
        with pytest.raises(ParamValidationError):
            _validate(dagbag.dags[f"mlrecipes_{job}"], conf)
    _validate(dagbag.dags["mlrecipes_lightgbm"], {"num_boost_round": 0, "num_leaves": 0})  # 0: the kind's default


def test_adding_a_job_is_adding_an_entry(schedule_file, monkeypatch):
    import yaml
    from airflow.dag_processing.dagbag import DagBag

    path = schedule_file()
    doc = yaml.safe_load(path.read_text())
    doc["jobs"]["xgboost_deep"] = {"project": "xgboost", "params": {"max_depth": 10},
                                   "schedule": "@weekly", "retries": 5}
    doc["jobs"]["not_yet"] = {"project": "no_such_project", "schedule": "@daily"}
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLRECIPES_SCHEDULE", str(path))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["mlrecipes_xgboost_deep"]
    assert dag.schedule == "@weekly" and dag.params["max_depth"] == 10
    assert dag.get_task("mlflow_run").retries == 5
    assert "mlrecipes_not_yet" not in bag.dags
