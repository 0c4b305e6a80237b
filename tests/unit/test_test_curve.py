"""recipe.TestCurve (eval.test_every): snapshots during training, evaluated after it."""

import time
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

from mlrecipes import recipe
from mlrecipes.errors import UserError


def _ds(task="classification"):
    return SimpleNamespace(task=task, X_test=np.arange(4), y_test=np.array([0, 1, 1, 0]))


def test_snapshots_are_evaluated_after_training_on_a_clock_without_them(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    weights, predicted = [], []
    with mlflow.start_run() as run:
        curve = recipe.TestCurve({"eval": {"test_every": 2}}, _ds(), prepare=lambda X: X * 10)
        assert [step for step in range(1, 7) if curve.due(step)] == [2, 4, 6]
        for step in (2, 4):
            time.sleep(0.05)  # "training"
            weights.append(step)
            curve.snapshot(step, lambda: (time.sleep(0.2), list(weights))[1])  # a slow copy
        weights.append("final")

        def predict_at(state, X):
            predicted.append((state, X.tolist()))
            right = len(state)  # 1 snapshot: half right, 2: all right
            return np.array([[1, 0], [0, 1], [0, 1], [1, 0]] if right == 2 else [[1, 0]] * 4)

        curve.finish(predict_at)
    assert predicted == [([2], [0, 10, 20, 30]), ([2, 4], [0, 10, 20, 30])]  # the states as they were
    client = mlflow.MlflowClient()
    acc = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test_curve_accuracy")}
    sec = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test_curve_seconds")}
    assert acc == {2: 0.5, 4: 1.0}
    assert 0.04 < sec[2] < 0.15 and 0.09 < sec[4] < 0.2  # the 0.2 s copies are left out


def test_without_a_state_the_snapshot_is_the_step_and_finish_without_points_logs_nothing(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns.db'}")
    curve = recipe.TestCurve({"eval": {"test_every": 0}}, _ds())
    assert not curve.due(1)
    curve.finish(lambda state, X: pytest.fail("nothing to evaluate"))
    curve = recipe.TestCurve({"eval": {"test_every": 1}}, _ds())
    curve.snapshot(3)
    rounds = []
    with mlflow.start_run():
        curve.finish(lambda state, X: rounds.append(state) or np.array([0.1, 0.9, 0.9, 0.1]))  # binary P(1)
    assert rounds == [3]


def test_regression_has_no_test_accuracy():
    with pytest.raises(UserError, match="classification tasks only"):
        recipe.TestCurve({"eval": {"test_every": 1}}, _ds("regression"))
