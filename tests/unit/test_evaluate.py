"""The baselines every run logs beside its test metrics."""

import math

import numpy as np
import pytest

from mlrecipes import evaluate


def test_the_classification_baseline_is_the_most_frequent_training_class():
    y_train = np.array([0, 1, 1, 1, 2, 2])  # shares 1/6, 1/2, 1/3
    y_test = np.array([1, 1, 2, 0])
    bar = evaluate.baseline("classification", y_train, y_test, 3)
    assert bar["test_baseline_accuracy"] == 0.5
    expected = -(2 * math.log(1 / 2) + math.log(1 / 3) + math.log(1 / 6)) / 4
    assert bar["test_baseline_log_loss"] == pytest.approx(expected)


def test_a_class_absent_from_training_is_a_finite_baseline_log_loss():
    bar = evaluate.baseline("classification", np.array([0, 0, 1]), np.array([2, 0]), 3)
    assert bar["test_baseline_accuracy"] == 0.5 and math.isfinite(bar["test_baseline_log_loss"])


def test_the_regression_baseline_is_the_training_mean():
    bar = evaluate.baseline("regression", np.array([1.0, 3.0]), np.array([2.0, 4.0, 0.0]), 0)
    assert bar == pytest.approx({"test_baseline_rmse": math.sqrt((0 + 4 + 4) / 3), "test_baseline_mae": 4 / 3})
