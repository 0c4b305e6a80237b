"""The schedule (mlrecipes.schedule): loading, profiles, params, the trigger form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mlrecipes import schedule
from mlrecipes.errors import UserError
from mlrecipes.launch import project

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- schedule


def test_defaults_profile_and_job_entries_merge():
    loaded = schedule.load_schedule(profile="local")
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    xgb, cnn = loaded.job("xgboost"), loaded.job("tf_mnist_cnn")
    assert xgb.retries == doc["defaults"]["retries"] and xgb.pool == "default_pool"
    assert cnn.params == {"arch": "cnn"} and cnn.pool == "mlrecipes_dl"
    assert cnn.timeout_minutes == doc["jobs"]["tf_mnist_cnn"]["timeout_minutes"]
    assert cnn.env_manager == "uv" and cnn.tracking_uri is None  # conf/schedule.yaml defaults: uv builds environments


def test_compose_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLRECIPES_PROFILE", "compose")
    job = schedule.load_schedule().job("xgboost")
    assert job.tracking_uri == "http://mlflow:5000"
    assert job.resolved_tracking_uri() == "http://mlflow:5000"
    assert job.env_manager == "uv" and job.env_root == "/opt/mlflow-envs/envs"
    env = project.child_env(job)
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
    assert project.child_env(job)["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/other.db"
    assert project.child_env(job)["PYTHONPATH"].split(os.pathsep)[0] == str(REPO / "src")


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
    kwargs = project.project_run_kwargs(job, params, "r" * 32, "5")
    assert kwargs["uri"] == str(REPO / "projects" / "tf_mnist") and kwargs["entry_point"] == "main"
    assert kwargs["env_manager"] == "uv" and kwargs["synchronous"] is True
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


# ---------------------------------------------------------------- each job's verdict


def _with_job(tmp_path, **entry) -> Path:
    """A copy of the real schedule plus job `extra`."""
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    doc["jobs"]["extra"] = entry
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_every_job_of_the_real_schedule_is_ready():
    assert schedule.job_problems(schedule.load_schedule()) == dict.fromkeys(schedule.load_schedule().jobs)


def test_the_forms_data_choices_are_the_data_groups_options():
    loaded = schedule.load_schedule()
    options = sorted(p.stem for p in (REPO / "conf" / "data").glob("*.yaml"))
    assert "enum" not in loaded.form["data"]  # no second list to keep in sync
    for job in ("xgboost", "ticks_scoring", "tf_mnist_cnn", "torch_mnist_mlp"):
        fields = schedule.form_fields(loaded.job(job), loaded.form)
        assert fields["data"]["schema"]["enum"] == options == schedule.data_options(loaded.job(job))
        assert fields["data"]["schema"]["description"] == loaded.form["data"]["description"]


@pytest.mark.parametrize(("entry", "problem"), [
    ({"project": "lightgbm", "params": {"data": "my_ticks"}},
     "data 'my_ticks' is not a data group: no conf/data/my_ticks.yaml (options: breast_cancer, csv,"),
    ({"project": "xgboost", "params": {"arch": "cnn"}}, "unknown parameter 'arch' for project xgboost"),
    ({"project": "xgboost", "params": {"max_depth": "deep"}}, "parameter max_depth='deep' is not a float"),
    ({"project": "xgboost", "params": {"max_depth": 100}},
     "parameter max_depth=100 is not valid in the trigger form: 100 is greater than the maximum of 32"),
    ({"project": "xgboost", "params": {"overrides": "seed=1; id"}}, "overrides 'seed=1; id': ';' is not allowed"),
    ({"project": "xgboost", "entry_point": "nope"}, "project xgboost has no entry point 'nope'"),
    ({"project": "xgboost", "schedule": "every day"}, "schedule 'every day' is not a cron expression or preset"),
    ({"project": "xgboost", "schedule": "@dayly"}, "schedule '@dayly' is not a cron expression or preset"),
    ({"project": "xgboost", "retries": "two"}, "retries must be a whole number >= 0, got 'two'"),
    ({"project": "xgboost", "timeout_minutes": 0}, "timeout_minutes must be above 0, got 0"),
    ({"project": "xgboost", "params": ["data=csv"]}, "params must be a mapping"),
    ({"project": "xgboost", "retires": 3}, "unknown key(s) retires"),
    ({"project": "xgboost", "memory_limit_mb": -5}, "memory_limit_mb -5 is not a positive number of MB"),
    ({"params": {}}, "no project"),
    ({"project": "not_there_yet"}, schedule.SKIPPED),
])
def test_a_bad_job_gets_its_problem_and_the_others_stay_ready(tmp_path, entry, problem):
    loaded = schedule.load_schedule(_with_job(tmp_path, **entry), strict=False)
    problems = schedule.job_problems(loaded)
    assert problems["extra"].startswith(problem), problems["extra"]
    assert "\n" not in problems["extra"]  # one line: the import error lists one job a line
    assert {name: p for name, p in problems.items() if name != "extra"} == dict.fromkeys(
        schedule.load_schedule().jobs)


def test_a_strict_load_still_fails_on_an_entry_that_is_no_job(tmp_path):
    path = _with_job(tmp_path, project="xgboost", retires=3)
    with pytest.raises(UserError, match=r"schedule job 'extra': unknown key\(s\) retires"):
        schedule.load_schedule(path)
    loaded = schedule.load_schedule(path, strict=False)
    assert "extra" not in loaded.jobs and loaded.invalid == {"extra": "unknown key(s) retires"}
    with pytest.raises(UserError, match=r"schedule job 'extra': unknown key\(s\) retires"):
        loaded.job("extra")  # `run extra` says why
