"""Tick features end to end (#34): a real `mlflow run` trains on the fixture tick table with
features=ticks (data=ticks' own) and a fitted transform; `-e predict` scores a day with the model's
definition over the day and its lookback. One training run and two scoring runs in all."""

from __future__ import annotations

import os
import subprocess

import helpers
import mlflow
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import yaml
from helpers import REPO, project_python

pytestmark = pytest.mark.smoke

DAY1 = "2026-01-02T00:00:00+00:00/2026-01-03T00:00:00+00:00"  # the table's first day: no history before it
DAY4 = "2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00"
SCALER = "features.transform={_target_:sklearn.preprocessing.StandardScaler}"
NAMES = ["ret_1", "ret_5", "ret_20", "vol_1m", "ticks_1m", "high_5m", "low_5m", "range_pos_5m", "mean_ret_20",
         "ret_1_z", "time_of_day", "day_of_week"]

# In the project's environment: the model's own definition computed on the whole table, as training
# computed it, and the model's predictions for the rows of one day.
WHOLE_TABLE = """
import sys
import mlflow, pyarrow.compute as pc, pyarrow.dataset as pads, pyarrow.parquet as pq, pyarrow as pa
from mlrecipes.features import FeatureSet
uri, path, day, out = sys.argv[1:]
config = mlflow.models.Model.load(uri).flavors["python_function"]["config"]
table = pads.dataset(path, format="parquet", partitioning=pads.partitioning(
    pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")).to_table()
table = FeatureSet.from_dict(config["feature_set"]).compute(table)
day_rows = table.filter(pc.equal(table["date"], day))
frame = day_rows.select(config["features"]).to_pandas()
predicted = mlflow.pyfunc.load_model(uri).predict(frame)
for name in ("ts", "symbol", *[f["name"] for f in config["feature_set"]["define"]]):
    predicted[name] = day_rows[name].to_pandas()
pq.write_table(pa.Table.from_pandas(predicted, preserve_index=False), out)
"""


def mlflow_run(uri: str, *params: str, **kw) -> helpers.ProjectRun:
    return helpers.mlflow_run(uri, "lightgbm", *params, timeout=900, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import ticks as generator

    root = tmp_path_factory.mktemp("features")
    generator.write_parquet(generator.make(), root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {"MLRECIPES_DATA_DIR": str(root)}
    result = mlflow_run(uri, "data=ticks", "num_boost_round=10", f"overrides=gate.threshold=0.3 {SCALER}",
                        experiment="features", env=env, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    yield {"uri": uri, "root": root, "env": env, "run": result.run}
    mlflow.set_tracking_uri(None)


def score(trained, *params) -> helpers.ProjectRun:
    return mlflow_run(trained["uri"], "data=ticks", *params, entry="predict", experiment="ticks-lightgbm-scoring",
                      env=trained["env"], cwd=trained["root"])


def test_training_logs_the_definition_and_the_model_carries_it(trained):
    run = trained["run"]
    p = run.data.params
    assert p["features.names"] == ",".join(NAMES) and p["features.count"] == "12"
    assert p["features.lookback"] == "20 rows and 5m"
    assert p["features.transform.class"] == "sklearn.preprocessing._data.StandardScaler"
    logged = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/features.yaml"))
    config = mlflow.models.Model.load("models:/ticks-lightgbm/1").flavors["python_function"]["config"]
    assert config["feature_set"] == logged and logged["key"] == "symbol" and logged["order"] == "ts"
    assert config["features"][-12:] == NAMES and "price" not in config["features"]
    assert config["transform"]["columns"][-12:] == NAMES and "symbol" not in config["transform"]["columns"]


def test_a_scored_day_has_the_features_and_predictions_training_had(trained, tmp_path):
    out = trained["root"] / "predictions"
    result = score(trained, f"output={out}", "keys=[ts,symbol]", f"window={DAY4}", "window_column=date")
    assert result.returncode == 0, result.stderr[-3000:]
    m = result.run.data.metrics
    assert m["short_rows"] == 0 and 0 < m["lookback_rows_read"] < m["rows_in"] * 2
    assert result.run.data.params["features.lookback"] == "20 rows and 5m"
    assert "warning:" not in result.stderr
    strings = pads.partitioning(pa.schema([("date", pa.string()), ("symbol", pa.string())]), flavor="hive")
    scored = pads.dataset(str(out), format="parquet", partitioning=strings).to_table().to_pandas()
    assert set(scored["date"]) == {"2026-01-04"}  # the slice only, no history row

    expected_path = tmp_path / "whole.parquet"
    done = subprocess.run([str(project_python("lightgbm")), "-c", WHOLE_TABLE, "models:/ticks-lightgbm/1",
                           str(trained["root"] / "ticks_parquet"), "2026-01-04", str(expected_path)],
                          capture_output=True, text=True, timeout=300, cwd=trained["root"],
                          env={**os.environ, "MLFLOW_TRACKING_URI": trained["uri"], "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr[-3000:]
    expected = pd.read_parquet(expected_path)
    assert len(expected) == len(scored) == m["rows_in"]
    key = ["symbol", "ts"]
    both = scored.merge(expected, on=key, suffixes=("", "_whole"))
    both = both[~both.duplicated(key, keep=False)]  # two ticks of one symbol and second: no key to join on
    assert len(both) > 0.9 * len(scored)
    first = both.sort_values("ts").groupby("symbol").head(5)  # each symbol's first ticks: windows over day 3
    assert len(first) == 20 and first["ret_20"].notna().all()
    assert (both["prediction"] == both["prediction_whole"]).all()
    for proba in (c for c in scored.columns if c.startswith("proba_")):
        pd.testing.assert_series_equal(both[proba], both[f"{proba}_whole"], check_names=False, rtol=1e-6)


def test_a_slice_whose_lookback_is_not_in_the_table_is_one_line_and_writes_nothing(trained):
    out = trained["root"] / "predictions_day1"
    result = score(trained, f"output={out}", f"window={DAY1}", "window_column=date")
    assert result.returncode != 0
    line = result.last_line
    assert line.startswith("error: the slice's lookback is not in the table: "), result.stderr[-3000:]
    assert "for 4 symbols (000660: 0, 005930: 0, 035420: 0, 051910: 0); more than scoring.max_short_fraction " \
           "0.01; the output is unchanged" in line
    assert "Traceback" not in result.stderr
    assert result.run.info.status == "FAILED" and result.run.data.tags["mlrecipes.exit_code"] == "2"
    assert not out.exists() or not any(out.rglob("*.parquet"))
