"""The smoke suite's one-time set-up: every project's environment, built once and under a lock."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def project_environments():
    """Check or build each project's environment before the first run, under the launcher's
    per-environment file lock (mlrecipes.launch.envs.prepare_env). The smoke suite runs on two pytest
    workers (`make test`: pytest-xdist), and MLflow's own environment builder takes no lock: two
    workers starting the same project on a cold machine would both build one directory."""
    from mlrecipes import schedule
    from mlrecipes.launch import envs

    plan = schedule.load_schedule()
    for job in ("xgboost", "lightgbm", "tf_mnist_mlp", "torch_mnist_mlp"):  # one job per project
        envs.prepare_env(plan.job(job))
