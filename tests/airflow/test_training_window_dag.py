"""A scheduled retraining on a rolling window (`dag.test()` with a logical date): a job that sets
`window_column` gets its data interval as `-P window`, and `window_length` reaches back from its end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.smoke


def test_daily_retraining_trains_on_the_days_before_its_interval_end(airflow_db, run_dag, tracking_uri, tmp_path):
    import mlflow
    import pyarrow.compute as pc
    import ticks as generator

    table = generator.make()
    generator.write_parquet(table, tmp_path)
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    doc["jobs"] = {"ticks_window": {"project": "lightgbm", "experiment": "ticks-window", "schedule": "@daily",
                                    "params": {"data": "ticks", "window_column": "date", "window_length": "2d",
                                               "num_boost_round": 5}}}
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(yaml.safe_dump(doc))
    env = {"MLRECIPES_DATA_DIR": str(tmp_path), "MLRECIPES_SCHEDULE": str(schedule),
           "MLFLOW_TRACKING_URI": tracking_uri}

    # The daily run at 2026-01-05 00:00 covers 2026-01-04; with window_length 2d it trains on the 3rd and 4th.
    proc = run_dag("mlrecipes_ticks_window", {}, env=env, logical_date="2026-01-05T00:00:00+00:00")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    result = run_dag.result(out)
    assert result["state"] == "success", out[-4000:]

    run = mlflow.MlflowClient(tracking_uri).get_run(result["xcom"]["mlflow_run_id"])
    p = run.data.params
    assert run.info.status == "FINISHED"
    assert p["window"] == "2026-01-04T00:00:00+00:00/2026-01-05T00:00:00+00:00"
    assert p["data.source.filter"] == "date >= '2026-01-03' and date < '2026-01-05'"
    window = pc.and_(pc.greater_equal(table["date"], "2026-01-03"), pc.less(table["date"], "2026-01-05"))
    assert int(p["data.rows.read"]) == pc.sum(window).as_py()
