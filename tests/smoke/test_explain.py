"""A table run of the real project: the table defaults train it, and it shows why it predicts what
it does (importance by gain, native contributions on a sample of test rows)."""

import mlflow
import pandas as pd
import pytest
import yaml
from helpers import REPO

# The tick fixture's raw feature columns (read only these: the fixture may carry more), time split.
TABLE = ("data.target=direction data.name=ticks data.split=time data.time_column=ts "
         "data.columns=[f0,f1,f2,f3,f4,f5,symbol,venue] gate.threshold=0.3")


def table(run_id: str, path: str) -> pd.DataFrame:
    doc = mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")  # mlflow.log_table's split layout
    return pd.DataFrame(doc["data"], columns=doc["columns"])


@pytest.mark.smoke
def test_a_table_run_trains_with_the_table_defaults_and_explains_itself(run_project, ticks):
    # No model parameter set: the MLproject passes its 0s, which take the table defaults.
    result = run_project("lightgbm", "data=parquet", f"overrides=data.path={ticks['parquet']} {TABLE} explain.rows=100",
                         experiment="tables")
    assert result.returncode == 0, result.stderr[-3000:]
    run = result.run
    p, rid = run.data.params, run.info.run_id
    tables = yaml.safe_load((REPO / "projects" / "lightgbm" / "conf" / "model_defaults" / "tables.yaml").read_text())
    assert p["model.tuned_for"] == "tables"
    assert float(p["model.num_boost_round"]) == tables["num_boost_round"]
    for key, value in tables["params"].items():
        assert p[f"model.params.{key}"] == str(value), key
    assert "model.params.force_col_wise" not in p  # an image default, left out on a table
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(rid, "evaluation")}
    assert {"evaluation/feature_importance.json", "evaluation/feature_importance.png",
            "evaluation/contributions.json", "evaluation/contributions.png"} <= files
    importance = table(rid, "evaluation/feature_importance.json")
    assert sorted(importance["feature"]) == ["f0", "f1", "f2", "f3", "f4", "f5", "symbol", "venue"]
    assert importance["gain"].is_monotonic_decreasing and importance["gain_share"].sum() == pytest.approx(1)
    # 100 seeded test rows x 3 classes, one column per feature and the bias
    assert p["explain.rows_sampled"] == "100"
    contributions = table(rid, "evaluation/contributions.json")
    assert len(contributions) == 300 and set(contributions["(output)"]) == {"down", "flat", "up"}
    assert contributions["(test row)"].nunique() == 100
    assert contributions["(test row)"].max() < int(p["data.rows.test"])
