"""The baselines every run logs beside its test metrics."""

import math

import numpy as np
import pytest

from mlrecipes import evaluate


def test_the_classification_baseline_is_the_training_class_shares():
    y_train = np.array([0, 1, 1, 1, 2, 2])  # shares 1/6, 1/2, 1/3: always class 1
    y_test = np.array([1, 1, 2, 0])
    bar = evaluate.baseline("classification", y_train, y_test, 3)
    assert bar["test_baseline_accuracy"] == 0.5
    shares_of_truth = [1 / 2, 1 / 2, 1 / 3, 1 / 6]
    assert bar["test_baseline_log_loss"] == pytest.approx(-sum(map(math.log, shares_of_truth)) / 4)
    assert bar["test_baseline_macro_f1"] == pytest.approx((2 / 3) / 3)  # class 1: precision 1/2, recall 1


def test_a_class_absent_from_training_is_a_finite_baseline_log_loss():
    bar = evaluate.baseline("classification", np.array([0, 0, 1]), np.array([2, 0]), 3)
    assert bar["test_baseline_accuracy"] == 0.5 and math.isfinite(bar["test_baseline_log_loss"])


def test_the_binary_baseline_ranks_nothing():
    bar = evaluate.baseline("classification", np.array([0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert bar["test_baseline_roc_auc"] == 0.5 and bar["test_baseline_pr_auc"] == 0.75  # the positive rate


def test_the_regression_baseline_is_the_training_mean():
    bar = evaluate.baseline("regression", np.array([1.0, 3.0]), np.array([2.0, 4.0, 0.0]), 0)
    assert bar["test_baseline_rmse"] == pytest.approx(math.sqrt((0 + 4 + 4) / 3))
    assert bar["test_baseline_mae"] == pytest.approx(4 / 3)
    assert bar["test_baseline_r2"] == pytest.approx(0.0)  # the test mean is the training mean here


def test_rows_are_grouped_by_value_with_missing_ones_together():
    from mlrecipes.data import positions_by_value

    got = positions_by_value(["b", None, "a", "b", float("nan")])
    assert list(got) == ["(missing)", "a", "b"]
    assert {k: v.tolist() for k, v in got.items()} == {"(missing)": [1, 4], "a": [2], "b": [0, 3]}
