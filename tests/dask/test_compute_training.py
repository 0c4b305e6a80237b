"""Training on a LocalCluster of 2 workers through the projects' fit_dask: the run, the model, the gate.

Needs the project's framework (xgboost, lightgbm) in the test environment: skipped without it."""

import importlib.util

import numpy as np
import pytest
from distributed import get_task_stream
from helpers import REPO, borrowed
from omegaconf import OmegaConf, open_dict

from mlrecipes.paths import SHARED_CONF


def project_module(name):
    spec = importlib.util.spec_from_file_location(f"train_{name}", REPO / "projects" / name / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def composed(project, ticks, dask_cfg, *overrides):
    from mlrecipes import config

    cfg = config.compose(REPO / "projects" / project, ["data=ticks", "features=none", f"data.path={ticks}",
                                                     "model.num_boost_round=40", *overrides])
    with open_dict(cfg):
        cfg.compute = OmegaConf.merge(OmegaConf.load(SHARED_CONF / "compute" / "dask.yaml"), dask_cfg)
    return cfg


@pytest.mark.parametrize("project", ["xgboost", "lightgbm"])
def test_trains_on_both_workers_registers_the_table_model_and_matches_one_process(
        project, tracking_uri, ticks, dask_client, monkeypatch):
    pytest.importorskip(project)
    import mlflow

    from mlrecipes import data, recipe
    from mlrecipes.compute import steps

    client, dask_cfg = dask_client
    module = project_module(project)
    monkeypatch.setattr(steps.cluster, "client", lambda cfg: borrowed(client))  # the session's cluster
    cfg = composed(project, ticks["parquet"], dask_cfg)
    streams = []

    def fit_dask(*args):  # the tasks of training alone: xgboost's per-worker `fn-`, lightgbm's `_train_part`
        with get_task_stream(client) as stream:
            trained = module.fit_dask(*args)
        streams.append(stream)
        return trained

    with mlflow.start_run() as run:
        outcome = steps.steps(cfg, fit_dask)
    trained_on = {t["worker"] for t in streams[0].data if str(t["key"]).startswith(("fn-", "_train_part"))}
    assert trained_on == set(client.scheduler_info()["workers"]), trained_on  # both workers trained
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["compute.n_workers"] == "2" and params["data.split.method"] == "time"
    assert outcome.registered is not None

    with mlflow.start_run():
        one = recipe.steps(composed(project, ticks["parquet"], dask_cfg), module.fit, register=False)
    assert outcome.metrics["test_accuracy"] == pytest.approx(one.metrics["test_accuracy"], abs=0.06)

    # The registered model is the table_model pyfunc: loaded here, it scores the single-process test
    # rows to the cluster's test accuracy.
    ds = data.load(cfg.data, "classification")
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    out = model.predict(ds.scoring_input())
    labels = np.asarray(ds.class_names)[ds.y_test]
    assert np.mean(out["prediction"].to_numpy() == labels) == pytest.approx(outcome.metrics["test_accuracy"], abs=1e-9)


def test_a_worker_killed_mid_training_fails_the_run_in_one_retryable_line(tracking_uri, ticks, dask_client,
                                                                          monkeypatch, capsys):
    pytest.importorskip("xgboost")
    import os
    import signal
    import threading
    import time

    import mlflow

    from mlrecipes.compute import steps

    client, dask_cfg = dask_client
    module = project_module("xgboost")
    monkeypatch.setattr(steps.cluster, "client", lambda cfg: borrowed(client))
    cfg = composed("xgboost", ticks["parquet"], dask_cfg, "model.num_boost_round=20000",
                   "model.early_stopping_rounds=20000", "model.params.max_depth=8")
    pids = client.run(os.getpid)

    def fit_dask(*args):  # the test kills a worker 5 s into training (its matrices take ~1 s here)
        victim = pids[sorted(pids)[-1]]
        threading.Timer(5, os.kill, (victim, signal.SIGKILL)).start()
        return module.fit_dask(*args)

    started = time.monotonic()
    with mlflow.start_run():
        outcome = steps.run(cfg, fit_dask)
    assert time.monotonic() - started < 180
    assert outcome.status == "FAILED" and outcome.exit_code == steps.EXIT_RETRY
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "a Dask worker was lost" in lines[0] and "nothing was registered" in lines[0]
    assert mlflow.MlflowClient().search_registered_models() == []
    # The retry runs on whatever workers are up (the nanny restarts the killed one, slowly on a busy machine).
    client.wait_for_workers(1, timeout=120)
    with mlflow.start_run():  # the retry
        assert steps.run(composed("xgboost", ticks["parquet"], dask_cfg), module.fit_dask) is None
    assert mlflow.MlflowClient().search_registered_models()[0].name == "ticks-xgboost"


@pytest.mark.parametrize("pinned", ["first", "every"])
def test_matrices_placed_on_different_workers_are_placed_again_before_training(pinned, tracking_uri, ticks,
                                                                              dask_client, monkeypatch, capsys):
    """A worker that joins while the matrices are built (the nanny restarting a killed one) can leave the
    validation rows on fewer workers than the training rows: xgboost would fail on the worker without
    them ("A worker cannot have empty input", a user error). Simulated by pinning a validation placement
    to one worker: once, the run places both parts again and trains; every time, the run ends in the
    retryable one line and registers nothing."""
    pytest.importorskip("xgboost")
    import mlflow

    from mlrecipes.compute import boost, spread, steps

    client, dask_cfg = dask_client
    module = project_module("xgboost")
    monkeypatch.setattr(steps.cluster, "client", lambda cfg: borrowed(client))
    real, calls = spread.across_workers, []
    one = sorted(client.scheduler_info()["workers"])[0]

    def across_workers(client_, frame, seed):
        calls.append(frame)
        if len(calls) == 2 or (pinned == "every" and len(calls) % 2 == 0):  # validation: one partition, one worker
            return client_.persist(frame.repartition(npartitions=1), workers=[one])
        return real(client_, frame, seed)

    monkeypatch.setattr(spread, "across_workers", across_workers)
    with mlflow.start_run():
        outcome = steps.run(composed("xgboost", ticks["parquet"], dask_cfg), module.fit_dask)
    if pinned == "first":
        assert outcome is None and len(calls) == 4  # training and validation placed twice
        assert mlflow.MlflowClient().search_registered_models()[0].name == "ticks-xgboost"
        return
    assert outcome.status == "FAILED" and outcome.exit_code == steps.EXIT_RETRY
    assert len(calls) == 2 * boost.PLACEMENTS
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "workers changed while the training data was placed" in lines[0], lines
    assert mlflow.MlflowClient().search_registered_models() == []
