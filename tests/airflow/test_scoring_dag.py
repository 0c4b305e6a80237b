"""The example scoring job's DAG run by Airflow (`dag.test()` with a logical date): its data
interval becomes its window (the row filter), so the run scores exactly that day, and a rerun replaces it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.smoke


def test_daily_scoring_dag_scores_its_data_interval(airflow_db, run_dag, tracking_uri, tmp_path):
    import mlflow
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import ticks as generator

    generator.write_parquet(generator.make(), tmp_path)
    env = {"MLRECIPES_DATA_DIR": str(tmp_path)}
    # The champion the job scores with: a tiny `-P data=ticks` training.
    argv = [str(Path(sys.executable).with_name("mlflow")), "run", str(REPO / "projects" / "lightgbm"),
            "--env-manager", "virtualenv", "--experiment-name", "tables", "-P", "data=ticks",
            "-P", "num_boost_round=5", "-P", "overrides=gate.threshold=0.3"]
    train = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=900,
                           env={**os.environ, **env, "MLFLOW_TRACKING_URI": tracking_uri})
    assert train.returncode == 0, train.stderr[-3000:]

    # A daily DAG run at 2026-01-04 00:00 covers 2026-01-03 (its data interval); twice: a rerun.
    for _ in range(2):
        proc = run_dag("mlrecipes_ticks_scoring", {}, env=env, logical_date="2026-01-04T00:00:00+00:00")
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-4000:]
        result = run_dag.result(out)
        assert result["state"] == "success", out[-4000:]

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ticks-lightgbm-scoring")
    first, second = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert first.info.status == second.info.status == "FINISHED"
    assert second.data.params["window"] == "2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00"
    assert second.data.params["slice"] == "date >= '2026-01-03' and date < '2026-01-04'"
    assert second.data.tags["airflow.dag_id"] == "mlrecipes_ticks_scoring"
    # The job's guard against an input that changed under the model; this day's symbols are all known.
    assert second.data.params["scoring.max_unseen_fraction"] == "0.5"
    assert second.data.metrics["unseen_rows"] == 0
    assert result["xcom"]["mlflow_run_id"] == second.info.run_id

    table = pads.dataset(str(tmp_path / "predictions" / "ticks"), format="parquet", partitioning="hive").to_table()
    source = pads.dataset(str(tmp_path / "ticks_parquet"), format="parquet", partitioning="hive").to_table()
    assert set(pc.unique(table["date"]).to_pylist()) == {"2026-01-03"}
    assert table.num_rows == source.filter(pc.equal(source["date"], "2026-01-03")).num_rows  # the rerun replaced it
    assert set(pc.unique(table["scoring_run_id"]).to_pylist()) == {second.info.run_id}
    assert {"ts", "symbol", "prediction", "proba_up"} <= set(table.column_names)
