"""The launcher (mlrecipes.jobs): schedule loading, argv building, param checks, environment safety.

Environment tests (marked smoke) build real MLflow virtualenvs (MLflow's own builder, pyenv's Python 3.11.7)
in a temporary env root, for a tiny project whose one dependency is a wheel made here, so pip
installs offline and in seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import all_runs, wait_for_recipe_run

from mlrecipes import jobs
from mlrecipes.errors import UserError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- schedule


def test_defaults_profile_and_job_entries_merge():
    schedule = jobs.load_schedule(profile="local")
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    xgb, cnn = schedule.job("xgboost"), schedule.job("tf_mnist_cnn")
    assert xgb.retries == doc["defaults"]["retries"] and xgb.pool == "default_pool"
    assert cnn.params == {"arch": "cnn"} and cnn.pool == "mlrecipes_dl"
    assert cnn.timeout_minutes == doc["jobs"]["tf_mnist_cnn"]["timeout_minutes"]
    assert cnn.env_manager == "virtualenv" and cnn.tracking_uri is None


def test_compose_profile_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLRECIPES_PROFILE", "compose")
    job = jobs.load_schedule().job("xgboost")
    assert job.tracking_uri == "http://mlflow:5000"
    assert job.resolved_tracking_uri() == "http://mlflow:5000"
    assert job.env_manager == "uv" and job.env_root == "/opt/mlflow-envs/envs"
    env = jobs.child_env(job)
    assert env["MLFLOW_ENV_ROOT"] == "/opt/mlflow-envs/envs"
    assert env["UV_PYTHON_INSTALL_DIR"] == "/opt/mlflow-envs/python"  # same volume as the envs
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # the defaults' env, merged with the profile's


def test_unknown_profile_job_or_key_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="unknown profile 'prod'"):
        jobs.load_schedule(profile="prod")
    with pytest.raises(UserError, match="unknown job 'nope'"):
        jobs.load_schedule().job("nope")
    bad = tmp_path / "s.yaml"
    bad.write_text("profiles: {local: {}}\njobs: {x: {project: xgboost, retires: 3}}\n")
    with pytest.raises(UserError, match="unknown key.*retires"):
        jobs.load_schedule(bad)


def test_tracking_uri_resolution(monkeypatch):
    job = jobs.load_schedule().job("xgboost")
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
    schedule = jobs.load_schedule(path)
    assert "future" in schedule.jobs and not schedule.job("future").exists
    assert "future" not in [j.name for j in schedule.existing()]


# ---------------------------------------------------------------- params and argv


def test_project_run_gets_the_params_as_a_dict_never_a_command_line():
    job = jobs.load_schedule().job("tf_mnist_cnn")
    params = jobs.check_params(job, {**job.params, "epochs": 3.0, "overrides": "seed=7 +x.y=[1,2]"})
    kwargs = jobs.project_run_kwargs(job, params, "r" * 32, "5")
    assert kwargs["uri"] == str(REPO / "projects" / "tf_mnist") and kwargs["entry_point"] == "main"
    assert kwargs["env_manager"] == "virtualenv" and kwargs["synchronous"] is True
    assert kwargs["run_id"] == "r" * 32 and kwargs["experiment_id"] == "5"
    assert kwargs["parameters"] == {"arch": "cnn", "epochs": "3", "overrides": "seed=7 +x.y=[1,2]"}


def test_check_params_rejects_unknown_names_bad_types_and_shell_characters():
    job = jobs.load_schedule().job("xgboost")
    with pytest.raises(UserError, match="unknown parameter 'arch'"):
        jobs.check_params(job, {"arch": "cnn"})
    with pytest.raises(UserError, match="not a float"):
        jobs.check_params(job, {"max_depth": "deep"})
    for bad in ("seed=1; id", "seed=$(id)", "seed=1\n", "a='b'"):
        with pytest.raises(UserError, match="overrides"):
            jobs.check_params(job, {"overrides": bad})
    assert jobs.check_params(job, {"max_depth": 8, "overrides": ""}) == {"max_depth": "8", "overrides": ""}


def test_form_defaults_are_the_jobs_params():
    schedule = jobs.load_schedule()
    fields = jobs.form_fields(schedule.job("torch_mnist_mlp"), schedule.form)
    assert fields["arch"]["default"] == "mlp"
    assert fields["overrides"]["schema"]["pattern"] == jobs.OVERRIDES_PATTERN
    assert fields["limit"]["schema"]["type"] == "integer" and fields["limit"]["default"] == 0
    assert fields["promote"] == {"default": True, "schema": schedule.form["promote"]}  # a switch, on


def test_cli_bad_param_is_one_line_and_creates_no_run(tracking_uri):
    proc = subprocess.run([sys.executable, "-m", "mlrecipes.jobs", "run", "xgboost", "-P", "bogus=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == jobs.EXIT_USER_ERROR
    assert proc.stderr.strip().splitlines() == [
        "error: unknown parameter 'bogus' for project xgboost; valid: data, num_boost_round, "
        "learning_rate, max_depth, early_stopping_rounds, limit, promote, overrides"]
    import mlflow

    assert mlflow.MlflowClient(tracking_uri).search_experiments(filter_string="name = 'mnist'") == []


# ---------------------------------------------------------------- environment safety


def _tiny_wheel(folder: Path) -> Path:
    """A pure-Python wheel `tinydep==0.1` (module `tinydep`), so pip installs it offline."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tinydep-0.1-py3-none-any.whl"
    files = {
        "tinydep/__init__.py": "VALUE = 42\n",
        "tinydep-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinydep\nVersion: 0.1\n",
        "tinydep-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n",
        "tinydep-0.1.dist-info/top_level.txt": "tinydep\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "tinydep-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("tinydep-0.1.dist-info/RECORD", record)
    return wheel


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A schedule with two jobs sharing one tiny project, its env root in tmp_path."""
    projects = tmp_path / "projects"
    project = projects / "tiny"
    project.mkdir(parents=True)
    (project / "MLproject").write_text(
        "name: tiny\npython_env: python_env.yaml\nentry_points:\n  main:\n"
        "    parameters: {n: {type: float, default: 1}}\n    command: python -c 'import tinydep'\n")
    (project / "python_env.yaml").write_text(
        'python: "3.11.7"\nbuild_dependencies:\n  - pip\ndependencies:\n  - tinydep==0.1\n')
    wheels = _tiny_wheel(tmp_path / "wheels").parent
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(yaml.safe_dump({
        "defaults": {"projects_dir": str(projects), "env_root": str(tmp_path / "envs")},
        "profiles": {"local": {}},
        "jobs": {"tiny_a": {"project": "tiny"}, "tiny_b": {"project": "tiny"}},
    }))
    # pip reads these from the environment: install from the local wheel only, no index.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("MLRECIPES_SCHEDULE", str(schedule))
    return jobs.load_schedule()


def _site_packages(env_dir: Path) -> Path:
    return next(env_dir.glob("lib/python3.11/site-packages"))


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_is_built_checked_and_marked(tiny):
    said = []
    job = tiny.job("tiny_a")
    env_dir = jobs.prepare_env(job, say=said.append)
    assert env_dir == jobs.env_dir_for(job) and env_dir.parent == Path(job.env_root)
    assert jobs.is_marked(env_dir)
    assert jobs.check_env(env_dir, ["tinydep==0.1"]) is None
    assert any("building environment" in line for line in said)
    # The other job of the same project uses the same environment, warm: nothing to do.
    said.clear()
    assert jobs.prepare_env(tiny.job("tiny_b"), say=said.append) == env_dir
    assert said == []


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_half_installed_env_is_detected_and_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = jobs.prepare_env(job)
    # What an install killed half-way leaves: the directory, no marker, a package missing.
    (env_dir / jobs.ENV_MARKER).unlink()
    shutil.rmtree(_site_packages(env_dir) / "tinydep")
    for dist_info in _site_packages(env_dir).glob("tinydep-*.dist-info"):
        shutil.rmtree(dist_info)
    assert "tinydep is not installed" in jobs.check_env(env_dir, ["tinydep==0.1"])
    said = []
    assert jobs.prepare_env(job, say=said.append) == env_dir
    assert any("is broken (tinydep is not installed)" in line for line in said)
    assert jobs.is_marked(env_dir) and jobs.check_env(env_dir, ["tinydep==0.1"]) is None


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_with_a_package_that_fails_to_import_is_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = jobs.prepare_env(job)
    (env_dir / jobs.ENV_MARKER).unlink()
    (_site_packages(env_dir) / "tinydep" / "__init__.py").write_text("VALUE = (\n")  # truncated file
    said = []
    jobs.prepare_env(job, say=said.append)
    assert any("import tinydep failed: SyntaxError" in line for line in said)
    assert jobs.check_env(env_dir, ["tinydep==0.1"]) is None


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_env_dir_without_python_is_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = jobs.env_dir_for(job)
    env_dir.mkdir(parents=True)  # killed right after `python -m venv` started
    said = []
    jobs.prepare_env(job, say=said.append)
    assert any("is broken (no bin/python)" in line for line in said)
    assert jobs.is_marked(env_dir)


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_healthy_unmarked_env_is_kept_not_rebuilt(tiny):
    job = tiny.job("tiny_a")
    env_dir = jobs.prepare_env(job)
    (env_dir / jobs.ENV_MARKER).unlink()  # e.g. built by a plain `mlflow run` before the launcher
    sentinel = env_dir / "sentinel"
    sentinel.write_text("still here")
    said = []
    jobs.prepare_env(job, say=said.append)
    assert said == [] and sentinel.exists() and jobs.is_marked(env_dir)


@pytest.mark.smoke  # builds a real (tiny) virtualenv
def test_two_cold_jobs_of_one_env_build_it_once(tiny, tmp_path):
    """Two jobs start while the env is being built: the second waits, then reuses it."""
    import fcntl

    env_dir = jobs.env_dir_for(tiny.job("tiny_a"))
    lock = env_dir.with_name(env_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    procs = []
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # stands for a third job in the middle of a build
        for name in ("tiny_a", "tiny_b"):
            procs.append(subprocess.Popen([sys.executable, "-m", "mlrecipes.jobs", "prepare-env", name],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=REPO))
        for proc in procs:  # both are blocked on the lock before it is released
            assert "waiting for" in proc.stdout.readline()
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        outputs.append(out)
    assert sum("building environment" in out for out in outputs) == 1
    assert jobs.is_marked(env_dir) and jobs.check_env(env_dir, ["tinydep==0.1"]) is None


def test_sigterm_while_waiting_for_the_env_ends_the_run_killed(tiny, tracking_uri):
    """The run `mlflow run` never got to close: the launcher closes it KILLED and exits 143."""
    import fcntl

    import mlflow

    env_dir = jobs.env_dir_for(tiny.job("tiny_a"))
    lock = env_dir.with_name(env_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    receipt = Path(os.environ["MLRECIPES_SCHEDULE"]).with_name("run.json")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-m", "mlrecipes.jobs", "run", "tiny_a",
                                 "--receipt", str(receipt)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                start_new_session=True)
        lines = []
        for line in proc.stdout:  # the run exists, then prepare-env blocks on the lock
            lines.append(line)
            if "waiting for" in line:
                break
        run_id = jobs.read_receipt(receipt)["run_id"]
        assert mlflow.MlflowClient(tracking_uri).get_run(run_id).info.status == "RUNNING"
        os.killpg(proc.pid, signal.SIGTERM)  # what Airflow's on_kill does to the launcher's group
        out = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == jobs.EXIT_TERMINATED, out
    assert mlflow.MlflowClient(tracking_uri).get_run(run_id).info.status == "KILLED"
    assert jobs.read_receipt(receipt)["status"] == "KILLED"
    assert not env_dir.exists() or not jobs.is_marked(env_dir)


# ---------------------------------------------------------------- launching a real project


def _launch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "MLRECIPES_DATA_DIR": str(REPO / "tests" / "fixtures")}
    return subprocess.Popen([sys.executable, "-m", "mlrecipes.jobs", "run", "xgboost", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
                            start_new_session=True)  # like Airflow's SubprocessHook


@pytest.mark.smoke
def test_a_project_failing_on_bad_input_exits_2_so_airflow_does_not_retry(tracking_uri):
    import mlflow

    proc = _launch("-P", "data=nope", "-P", "limit=300")
    out = proc.communicate(timeout=900)[0]
    assert proc.returncode == jobs.EXIT_USER_ERROR, out
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
    assert proc.returncode == jobs.EXIT_TERMINATED, out
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"error: run {run.info.run_id} terminated" in out  # closed by train.py itself
    assert run.data.tags["mlrecipes.exit_code"] == "143"
