"""Window features on a LocalCluster of 2 workers: the single-process values for every row, in a
training run whose model carries the definition."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import REPO

from mlrecipes.errors import UserError

ROWS_PER_FILE = 200


@pytest.fixture(scope="module")
def mixed(ticks, tmp_path_factory):
    """The tick table with ties (times cut to 5 minutes: several ticks of a symbol share one), a few
    rows without a time, a `seq` column (the row's place), in files of 200 rows of every symbol
    (hive by date), so a symbol's history, and some of its ties, span several files."""
    import pyarrow.dataset as pads

    table = ticks["table"]
    five = 300 * 1_000_000
    ts = pc.cast(pc.multiply(pc.divide(pc.cast(table.column("ts"), pa.int64()), five), five), pa.timestamp("us"))
    ts = pc.if_else(pa.array(np.isin(np.arange(table.num_rows), [3, 700, 1501])), pa.scalar(None, ts.type), ts)
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    table = table.append_column("seq", pa.array(np.arange(table.num_rows)))
    out = tmp_path_factory.mktemp("mixed") / "ticks"
    pads.write_dataset(table, out, format="parquet", partitioning=["date"], partitioning_flavor="hive",
                       max_rows_per_file=ROWS_PER_FILE, max_rows_per_group=ROWS_PER_FILE, preserve_order=True)
    return table, out


def composed(path, *overrides):
    from mlrecipes import config

    return config.compose(REPO / "projects" / "xgboost", ["data=ticks", f"data.path={path}", *overrides])


def test_the_clusters_features_are_the_single_process_features_of_every_row(mixed, dask_client):
    import pyarrow.dataset as pads

    from mlrecipes.compute import features, read
    from mlrecipes.data import columns, ingest

    client, _ = dask_client
    table, path = mixed
    files = len(pads.dataset(path).files)
    day = pc.cast(pc.divide(table.column("seq"), 480), pa.int64()).to_numpy()
    where = (table.column("seq").to_numpy() - day * 480) // ROWS_PER_FILE + 10 * day  # the row's file
    ties = table.select(["symbol", "ts"]).append_column("file", pa.array(where)).group_by(["symbol", "ts"]).aggregate(
        [("file", "count_distinct")])
    assert files > 5 and pc.max(ties.column("file_count_distinct")).as_py() > 1  # a tie across two files

    cfg = composed(path).data
    fs = ingest.feature_set(cfg)
    opened = features.reading(read.open_for_cluster(cfg), fs)
    df = opened.frame()
    assert df.npartitions == files
    out = features.with_features(client, df, fs).compute()

    # The single-process run: the same read, the same definition, in one process.
    one = ingest.with_features(opened.source.read(list(opened.scan.projection)), fs)
    assert out["seq"].tolist() == list(range(table.num_rows))  # the read's partitions and row order
    assert out["ts"].isna().sum() == 3
    for name in fs.names:
        expected = columns.feature(one.column(name))
        assert out[name].dtype == np.float32
        np.testing.assert_array_equal(out[name].to_numpy(), expected, err_msg=name)
    assert np.isfinite(out["ret_20"].to_numpy()).sum() > 2000


def test_a_key_too_large_for_a_worker_is_refused_before_the_shuffle(mixed, dask_client, monkeypatch):
    from mlrecipes.compute import features, read
    from mlrecipes.data import ingest

    client, _ = dask_client
    cfg = composed(mixed[1]).data
    fs = ingest.feature_set(cfg)
    df = features.reading(read.open_for_cluster(cfg), fs).frame()
    monkeypatch.setattr(features, "HEADROOM", 1e-6)  # a worker of a few hundred bytes
    with pytest.raises(UserError, match=r"symbol='\d+' has \d+ rows.*a key's whole history must fit one worker"):
        features.with_features(client, df, fs)


def test_a_cluster_run_with_features_logs_them_and_its_model_carries_the_definition(
        tracking_uri, ticks, dask_client, monkeypatch):
    pytest.importorskip("xgboost")
    from contextlib import nullcontext

    import mlflow
    import yaml
    from omegaconf import OmegaConf, open_dict
    from test_compute_training import project_module

    from mlrecipes import data
    from mlrecipes.compute import steps
    from mlrecipes.paths import SHARED_CONF

    client, dask_cfg = dask_client
    monkeypatch.setattr(steps.cluster, "client", lambda cfg: nullcontext(client))  # the session's cluster
    cfg = composed(ticks["parquet"], "model.num_boost_round=20")
    with open_dict(cfg):
        cfg.compute = OmegaConf.merge(OmegaConf.load(SHARED_CONF / "compute" / "dask.yaml"), dask_cfg)
    with mlflow.start_run() as run:
        outcome = steps.steps(cfg, project_module("xgboost").fit_dask)
    assert outcome.registered is not None

    # Logged as a single-process run logs them, and carried by the model: scoring recomputes from there.
    ds = data.load(cfg.data, "classification")  # one process: the same table, the same features
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["features.names"] == ",".join(n["name"] for n in ds.feature_set["define"])
    assert params["features.count"] == "12"
    logged = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/features.yaml")
    assert yaml.safe_load(logged) == ds.feature_set
    flavor = mlflow.models.Model.load(outcome.model_uri).flavors["python_function"]
    assert flavor["config"]["feature_set"] == ds.feature_set
    assert {f["name"] for f in ds.feature_set["define"]} <= set(flavor["config"]["features"])

    # The single-process test rows, features computed in one process: the cluster's test accuracy.
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    out = model.predict(ds.scoring_input())
    labels = np.asarray(ds.class_names)[ds.y_test]
    assert np.mean(out["prediction"].to_numpy() == labels) == pytest.approx(outcome.metrics["test_accuracy"], abs=1e-9)


def test_many_keys_are_shuffled_into_more_partitions_when_they_would_crowd_a_worker(dask_client, monkeypatch):
    import dask.dataframe as dd
    import pandas as pd

    from mlrecipes.compute import features
    from mlrecipes.features import FeatureSet

    client, _ = dask_client
    fs = FeatureSet.from_config({"key": "symbol", "define": [{"name": "ret_1", "op": "log_return", "column": "price",
                                                              "n": 1}]}, "ts")
    frame = pd.DataFrame({"symbol": [f"s{i % 100:03d}" for i in range(3000)],
                          "ts": pd.date_range("2026-01-02", periods=3000, freq="s"), "price": np.linspace(1, 2, 3000),
                          features.ROW: np.arange(3000)})
    inputs = dd.from_pandas(frame, npartitions=2)
    assert features.partitions(client, inputs, fs) == 2
    one_key = features.memory_to_compute(features._key_sizes(frame.drop(columns=features.ROW), "symbol"), fs).max()
    limit = min(w["memory_limit"] for w in client.scheduler_info(n_workers=-1)["workers"].values())
    monkeypatch.setattr(features, "HEADROOM", 10 * one_key / limit)  # ten keys' worth per partition
    assert 20 <= features.partitions(client, inputs, fs) <= 21


@pytest.mark.parametrize("day", ["2026-01-02", "2026-01-04"])  # the table's first day: its ticks lack history
def test_a_slice_scored_on_the_cluster_gets_the_features_scoring_computes_in_one_process(day, mixed, ticks,
                                                                                          dask_client):
    from datetime import date, timedelta

    from mlrecipes.compute import features, read
    from mlrecipes.data import ingest, tables
    from mlrecipes.scoring import inputs, windowed
    from mlrecipes.scoring.model import Model

    client, _ = dask_client
    path = ticks["parquet"] if day == "2026-01-02" else mixed[1]  # the mixed table has ticks without a time that day
    after = date.fromisoformat(day) + timedelta(days=1)
    cfg = composed(path, "+scoring=default", f"window.interval={day}T00:00:00+00:00/{after}T00:00:00+00:00",
                   "window.column=date", "scoring.keys=[ts,symbol]")
    fs = ingest.feature_set(cfg.data)
    model = Model("m", "1", "", "", "classification", ["down", "flat", "up"],
                  ["symbol", "venue", *(f"f{i}" for i in range(6)), *fs.names], feature_set=fs.to_dict())
    sliced = inputs.table_slice(cfg, model)
    filters = tables.as_conditions(cfg.data.get("filters"))
    columns = list(dict.fromkeys([*sliced.passthrough, *model.raw_features, sliced.target, sliced.group]))
    one_report = windowed.FeatureReport()
    one = windowed.featured_table(sliced.source, columns, model, filters, None, one_report)

    filesystem, root = read._filesystem(sliced.source, {})
    futures, report = features.featured_slice(client, sliced, model, read.pieces(sliced.source, root), filesystem,
                                              filters, None)
    on = pa.concat_tables(client.gather(futures))
    order = [(c, "ascending") for c in ("symbol", "ts", "f0", "f1", "venue")]
    assert on.num_rows == one.num_rows > 0
    # NaN and null are one missing value to the model; the cluster's rows pass through pandas, which keeps one
    assert missing_as_null(on.select(one.column_names).sort_by(order)).equals(missing_as_null(one.sort_by(order)))
    assert (report.slice_rows, report.history_rows, report.short_rows, report.short_by_feature) == (
        one_report.slice_rows, one_report.history_rows, one_report.short_rows, one_report.short_by_feature)
    if day == "2026-01-02":
        assert report.short_rows > 0 and report.history_rows == 0
    else:
        assert report.short_rows == 0 and report.history_rows > 0


def missing_as_null(table: pa.Table) -> pa.Table:
    return pa.table({name: pc.if_else(pc.is_nan(column), None, column) if pa.types.is_floating(column.type) else column
                     for name, column in zip(table.column_names, table.columns, strict=True)})


def test_a_model_with_window_features_scores_on_the_cluster_as_in_one_process(tracking_uri, ticks, tmp_path,
                                                                               dask_client, monkeypatch):
    pytest.importorskip("xgboost")
    from contextlib import nullcontext

    import mlflow
    from test_compute_scoring import DAY3, RUN_METRICS, read, rows, scored
    from test_compute_training import project_module

    from mlrecipes import recipe
    from mlrecipes.compute import score

    client, _ = dask_client
    monkeypatch.setattr(score.cluster, "client", lambda cfg: nullcontext(client))  # the session's cluster
    cfg = composed(ticks["parquet"], "model.num_boost_round=20", "gate.threshold=0", "gate.beat_baseline=false")
    with mlflow.start_run():  # a champion trained in one process with data=ticks' own features
        assert recipe.steps(cfg, project_module("xgboost").fit).registered is not None
    window = [f"window.interval={DAY3}", "window.column=date"]
    code, one = scored("xgboost", ticks["parquet"], tmp_path / "one", *window, compute="local")
    assert code == 0
    code, on = scored("xgboost", ticks["parquet"], tmp_path / "dask", *window)
    assert code == 0 and on.info.status == "FINISHED"
    expected, got = read(tmp_path / "one"), read(tmp_path / "dask")
    assert got.num_rows == expected.num_rows > 0
    assert rows(got).equals(rows(expected))  # the same rows, predictions and probabilities
    names = [*RUN_METRICS, "short_rows", "lookback_rows_read"]
    assert {k: on.data.metrics.get(k) for k in names} == {k: one.data.metrics.get(k) for k in names}
    assert on.data.metrics["lookback_rows_read"] > 0 and on.data.params["features.definition"] == "the model's"
