"""The `mlrecipes` command: every verb answers --help, one error style, options anywhere, the config verb."""

import os
import subprocess
import sys

import pytest
import yaml

from mlrecipes import cli
from mlrecipes.errors import UserError
from mlrecipes.launch import job_for, job_named
from mlrecipes.paths import REPO_ROOT
from mlrecipes.schedule import load_schedule

VERBS = ("run", "list", "config", "score", "sweep", "promote", "rollback", "history", "leaderboard", "reap")


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for verb in VERBS:
        assert f"\n    {verb} " in out, verb


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_answers_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([verb, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith(f"usage: mlrecipes {verb}")
    assert "--tracking-uri" in out  # the common options on every verb


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: VERB"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["run"], "run: name one JOB or give --all"),
    (["run", "xgboost", "--all"], "run: name one JOB or give --all"),
    (["run", "--all", "-P", "limit=1"], "run --all takes no -P"),
    (["run", "xgboost", "-P", "limit"], "argument -P: expected name=value, got 'limit'"),
    (["run", "nope"], "unknown job 'nope'"),
    (["score", "nope"], "'nope' is neither a job nor a project of the schedule"),
    (["sweep", "tf_mnist_cnn"], "job 'tf_mnist_cnn' runs entry point 'main', not 'sweep'"),
    (["reap", "--older-than", "soon"], "age 'soon' is not a duration"),
])
def test_a_mistake_is_one_error_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_tracking_uri_is_taken_before_and_after_the_verb(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    missing = tmp_path / "none.db"
    for argv in (["--tracking-uri", f"sqlite:///{missing}", "leaderboard"],
                 ["leaderboard", "--tracking-uri", f"sqlite:///{missing}"]):
        assert cli.main(argv) == 2
        assert f"no MLflow store at {missing}" in capsys.readouterr().err
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not missing.exists()


def test_list_prints_every_job(capsys):
    assert cli.main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == list(load_schedule().jobs)


def test_config_prints_what_the_job_would_compose(capsys):
    assert cli.main(["config", "xgboost", "-P", "limit=123", "-P", "overrides=seed=7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["limit"] == 123 and cfg["seed"] == 7 and cfg["project"] == "xgboost"
    assert cfg["registry"]["model_name"] == "mnist-xgboost"


def test_config_of_a_scoring_job_has_the_scoring_group(capsys):
    assert cli.main(["config", "ticks_scoring"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["scoring"]["mode"] == "overwrite-slice" and cfg["data"]["name"] == "ticks"


def test_config_refuses_a_bad_value_in_one_line(capsys):
    assert cli.main(["config", "xgboost", "-P", "overrides=train.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_an_adhoc_scoring_job_of_a_project_takes_the_profile_defaults():
    schedule = load_schedule()
    job = job_for(schedule, "xgboost", "predict")
    base = schedule.job("xgboost")
    assert job.entry_point == "predict" and job.params == {} and job.schedule is None
    assert job.experiment == "xgboost-scoring" and job.env_manager == base.env_manager
    assert job_for(schedule, "ticks_scoring", "predict") is schedule.job("ticks_scoring")


def test_the_launchers_prepare_env_child_finds_an_adhoc_job_by_its_name():
    """`mlrecipes score xgboost` on a machine without the environment: the launcher's child runs
    `prepare-env xgboost-predict`, which once failed with "unknown job"."""
    schedule = load_schedule()
    for name, entry_point in (("xgboost-predict", "predict"), ("lightgbm-sweep", "sweep")):
        job = job_named(schedule, name)
        assert (job.name, job.entry_point) == (name, entry_point)
        assert job.env_manager == job_for(schedule, name.split("-")[0], entry_point).env_manager
    assert job_named(schedule, "xgboost") is schedule.job("xgboost")
    with pytest.raises(UserError, match="unknown job 'nosuch-predict'"):
        job_named(schedule, "nosuch-predict")


def test_console_script_and_python_m_are_the_same_command():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "mlrecipes", "run"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr == "error: run: name one JOB or give --all\n"
