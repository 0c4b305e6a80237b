"""mlrecipes.explain: importance by gain and per-feature contributions, with the boosters' native
outputs stood in by arrays of their shapes (the real ones: tests/smoke/test_tables.py)."""

from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from mlrecipes import explain

FEATURES = ["f0", "symbol", "f1"]


def test_importance_lists_every_feature_by_gain_with_its_share():
    table = explain.importance_table(FEATURES, [2.0, 6.0, 0.0], [3, 5, 0])
    assert table["feature"].tolist() == ["symbol", "f0", "f1"]  # never split on: listed, 0
    assert table["gain_share"].tolist() == [0.75, 0.25, 0.0] and table["splits"].tolist() == [5, 3, 0]
    assert explain.importance_table(["a"], [0.0], [0])["gain_share"].tolist() == [0.0]  # a stump: no division by 0


def test_the_sample_is_seeded_bounded_and_in_row_order():
    a = explain.sample_rows(10_000, 1000, seed=42)
    assert len(a) == 1000 and len(set(a)) == 1000 and (np.diff(a) > 0).all() and a.max() < 10_000
    assert (a == explain.sample_rows(10_000, 1000, seed=42)).all()
    assert not (a == explain.sample_rows(10_000, 1000, seed=7)).all()
    assert explain.sample_rows(5, 1000, seed=42).tolist() == [0, 1, 2, 3, 4]  # fewer rows: all of them
    assert len(explain.sample_rows(5, 0, seed=42)) == 0


@pytest.mark.parametrize(("raw_shape", "outputs"), [
    ((4, 4), 1),         # binary / regression, both libraries: (rows, features + 1)
    ((4, 3, 4), 3),      # XGBoost multiclass: (rows, classes, features + 1)
    ((4, 12), 3),        # LightGBM multiclass: (rows, classes * (features + 1)), class by class
])
def test_both_libraries_contributions_become_rows_outputs_features(raw_shape, outputs):
    raw = np.arange(np.prod(raw_shape), dtype=np.float64).reshape(raw_shape)
    got = explain.as_contributions(raw, rows=4, features=3)
    assert got.shape == (4, outputs, 4)
    assert got[1, -1].tolist() == raw.reshape(4, -1)[1, -4:].tolist()  # the last class's block, bias last
    with pytest.raises(ValueError, match="do not split"):
        explain.as_contributions(np.zeros((4, 5)), rows=4, features=3)


def test_outputs_are_named_by_task():
    assert explain.output_names("classification", ["down", "flat", "up"], 3, "direction") == ["down", "flat", "up"]
    assert explain.output_names("classification", ["0", "1"], 1, "up") == ["1"]  # log-odds of the positive class
    assert explain.output_names("regression", [], 1, "next_return") == ["next_return"]


def test_the_multiclass_summary_sums_each_class_s_mean_absolute_contribution():
    contribs = np.zeros((2, 2, 4))  # 2 rows, 2 classes, 3 features + bias
    contribs[:, 0, 0] = [1.0, -3.0]  # f0 moves class a: mean |.| 2
    contribs[:, 1, 2] = [0.5, 0.5]   # f1 moves class b: 0.5
    contribs[:, :, 3] = 100.0         # the bias is no feature
    summary = explain.mean_abs(contribs, FEATURES, ["a", "b"])
    assert summary.index.tolist() == ["f0", "f1", "symbol"]
    assert summary.loc["f0"].tolist() == [2.0, 0.0] and summary.loc["f1"].tolist() == [0.0, 0.5]
    table = explain.contributions_table(contribs, np.array([7, 9]), FEATURES, ["a", "b"])
    assert table[explain.TEST_ROW].tolist() == [7, 7, 9, 9] and table[explain.OUTPUT].tolist() == ["a", "b", "a", "b"]
    assert table.columns.tolist() == [explain.TEST_ROW, explain.OUTPUT, *FEATURES, explain.BIAS]


def _dataset(feature_names, task="classification", classes=("down", "flat", "up"), rows=50):
    X = pd.DataFrame({"f0": np.linspace(0, 1, rows), "symbol": pd.Categorical(["a", "b"] * (rows // 2)),
                      "f1": np.zeros(rows)})
    return SimpleNamespace(feature_names=feature_names, X_test=X, y_test=np.zeros(rows), task=task,
                           class_names=list(classes), target="direction")


def _artifacts(run_id: str) -> set[str]:
    return {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "evaluation")}


def test_a_table_run_logs_importance_contributions_and_the_sample_size(tracking_uri):
    cfg = OmegaConf.create({"seed": 42, "explain": {"rows": 20, "top": 2}})
    ds = _dataset(FEATURES)
    seen = []

    def contributions(X):  # LightGBM's multiclass layout, each value its row's f0
        seen.append(X)
        return np.repeat(X["f0"].to_numpy()[:, None], 3 * 4, axis=1)

    with mlflow.start_run() as run:
        explain.explain(cfg, ds, FEATURES, [1.0, 3.0, 0.0], [2, 4, 0], contributions)
    rid = run.info.run_id
    assert _artifacts(rid) == {"evaluation/feature_importance.json", "evaluation/feature_importance.png",
                               "evaluation/contributions.json", "evaluation/contributions.png"}
    assert mlflow.get_run(rid).data.params["explain.rows_sampled"] == "20"
    assert len(seen) == 1 and len(seen[0]) == 20  # the booster saw the sample only, as model input
    table = mlflow.load_table("evaluation/contributions.json", run_ids=[rid])
    assert len(table) == 20 * 3 and set(table[explain.OUTPUT]) == {"down", "flat", "up"}
    rows = explain.sample_rows(50, 20, 42)
    assert table[explain.TEST_ROW].tolist() == np.repeat(rows, 3).tolist()
    assert np.allclose(table["f0"], ds.X_test["f0"].to_numpy()[np.repeat(rows, 3)])
    importance = mlflow.load_table("evaluation/feature_importance.json", run_ids=[rid])
    assert importance["feature"].tolist() == ["symbol", "f0", "f1"]  # every feature, the chart its top 2


def test_an_image_set_logs_the_importance_table_only(tracking_uri):
    cfg = OmegaConf.create({"seed": 42, "explain": {"rows": 20, "top": 30}})
    pixels = [f"f{i}" for i in range(784)]

    def contributions(X):
        raise AssertionError("no contributions for images")

    with mlflow.start_run() as run:
        explain.explain(cfg, _dataset(None), pixels, np.ones(784), np.ones(784), contributions)
    assert _artifacts(run.info.run_id) == {"evaluation/feature_importance.json"}
    assert "explain.rows_sampled" not in mlflow.get_run(run.info.run_id).data.params


def test_rows_0_turns_contributions_off(tracking_uri):
    cfg = OmegaConf.create({"seed": 1, "explain": {"rows": 0}})
    with mlflow.start_run() as run:
        explain.explain(cfg, _dataset(FEATURES, task="regression", classes=()), FEATURES, [1, 1, 1], [1, 1, 1],
                        lambda X: pytest.fail("sampled nothing, computed nothing"))
    assert "evaluation/contributions.json" not in _artifacts(run.info.run_id)
    assert mlflow.get_run(run.info.run_id).data.params["explain.rows_sampled"] == "0"
