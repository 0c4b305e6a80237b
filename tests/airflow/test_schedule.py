"""The schedule (mlrecipes.schedule): loading, profiles, params, the trigger form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mlrecipes import jobs, schedule
from mlrecipes.errors import UserError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- schedule


def test_defaults_profile_and_job_entries_merge():
    loaded = schedule.load_schedule(profile="local")
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    xgb, cnn = loaded.job("xgboost"), loaded.job("tf_mnist_cnn")
    assert xgb.retries == doc["defaults"]["retries"] and xgb.pool == "default_pool"
    assert cnn.params == {"arch": "cnn"} and cnn.pool == "mlrecipes_dl"
    assert cnn.timeout_minutes == doc["jobs"]["tf_mnist_cnn"]["timeout_minutes"]
    assert cnn.env_manager == "virtualenv" and cnn.tracking_uri is None


def test_compose_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLRECIPES_PROFILE", "compose")
    job = schedule.load_schedule().job("xgboost")
    assert job.tracking_uri == "http://mlflow:5000"
    assert job.resolved_tracking_uri() == "http://mlflow:5000"
    assert job.env_manager == "uv" and job.env_root == "/opt/mlflow-envs/envs"
    env = jobs.child_env(job)
    assert env["MLFLOW_ENV_ROOT"] == "/opt/mlflow-envs/envs"
    assert env["UV_PYTHON_INSTALL_DIR"] == "/opt/mlflow-envs/python"  # same volume as the envs
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # the defaults' env, merged with the profile's


def test_unknown_profile_job_or_key_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="unknown profile 'prod'"):
        schedule.load_schedule(profile="prod")
    with pytest.raises(UserError, match="unknown job 'nope'"):
        schedule.load_schedule().job("nope")
    bad = tmp_path / "s.yaml"
    bad.write_text("profiles: {local: {}}\njobs: {x: {project: xgboost, retires: 3}}\n")
    with pytest.raises(UserError, match="unknown key.*retires"):
        schedule.load_schedule(bad)


def test_tracking_uri_resolution(monkeypatch):
    job = schedule.load_schedule().job("xgboost")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert job.resolved_tracking_uri() == f"sqlite:///{REPO / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/other.db")
    assert job.resolved_tracking_uri() == "sqlite:////tmp/other.db"
    assert jobs.child_env(job)["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/other.db"
    assert jobs.child_env(job)["PYTHONPATH"].split(os.pathsep)[0] == str(REPO / "src")


def test_a_job_whose_project_is_missing_is_skipped(tmp_path):
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    doc["jobs"]["future"] = {"project": "not_there_yet"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    loaded = schedule.load_schedule(path)
    assert "future" in loaded.jobs and not loaded.job("future").exists
    assert "future" not in [j.name for j in loaded.existing()]


# ---------------------------------------------------------------- params and argv


def test_project_run_gets_the_params_as_a_dict_never_a_command_line():
    job = schedule.load_schedule().job("tf_mnist_cnn")
    params = schedule.check_params(job, {**job.params, "epochs": 3.0, "overrides": "seed=7 +x.y=[1,2]"})
    kwargs = jobs.project_run_kwargs(job, params, "r" * 32, "5")
    assert kwargs["uri"] == str(REPO / "projects" / "tf_mnist") and kwargs["entry_point"] == "main"
    assert kwargs["env_manager"] == "virtualenv" and kwargs["synchronous"] is True
    assert kwargs["run_id"] == "r" * 32 and kwargs["experiment_id"] == "5"
    assert kwargs["parameters"] == {"arch": "cnn", "epochs": "3", "overrides": "seed=7 +x.y=[1,2]"}


def test_check_params_rejects_unknown_names_bad_types_and_shell_characters():
    job = schedule.load_schedule().job("xgboost")
    with pytest.raises(UserError, match="unknown parameter 'arch'"):
        schedule.check_params(job, {"arch": "cnn"})
    with pytest.raises(UserError, match="not a float"):
        schedule.check_params(job, {"max_depth": "deep"})
    for bad in ("seed=1; id", "seed=$(id)", "seed=1\n", "a='b'"):
        with pytest.raises(UserError, match="overrides"):
            schedule.check_params(job, {"overrides": bad})
    assert schedule.check_params(job, {"max_depth": 8, "overrides": ""}) == {"max_depth": "8", "overrides": ""}


def test_form_defaults_are_the_jobs_params():
    loaded = schedule.load_schedule()
    fields = schedule.form_fields(loaded.job("torch_mnist_mlp"), loaded.form)
    assert fields["arch"]["default"] == "mlp"
    assert fields["overrides"]["schema"]["pattern"] == schedule.OVERRIDES_PATTERN
    assert fields["limit"]["schema"]["type"] == "integer" and fields["limit"]["default"] == 0
    assert fields["promote"] == {"default": True, "schema": loaded.form["promote"]}  # a switch, on
