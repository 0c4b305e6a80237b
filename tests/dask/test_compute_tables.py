"""A table on a LocalCluster of 2 workers: the same rows, split, categories and metrics as one process."""

import numpy as np
import pandas as pd
import pytest
from helpers import workers_of
from omegaconf import OmegaConf

pytest.importorskip("distributed")

from distributed import get_task_stream, wait  # noqa: E402

from mlrecipes import evaluate  # noqa: E402
from mlrecipes.compute import ingest, metrics, read, splits  # noqa: E402
from mlrecipes.data import columns, load_table  # noqa: E402
from mlrecipes.errors import UserError  # noqa: E402


def cfg(path, kind="parquet", **extra):
    base = {"kind": kind, "name": "ticks", "path": str(path), "target": "direction", "columns": None,
            "exclude": ["date", "ts", "next_return", "up", "price"], "filters": None, "split": "time",
            "time_column": "ts", "split_column": None, "val_fraction": 0.1, "test_fraction": 0.2, "limit": 0,
            "seed": 1, "storage_options": {}, "report_by": None}
    return OmegaConf.create({**base, **extra})


@pytest.mark.parametrize("kind", ["parquet", "delta"])
def test_the_workers_read_the_rows_one_process_reads(dask_client, ticks, kind):
    client, _ = dask_client
    config = cfg(ticks[kind], kind, filters=[["symbol", "in", ["005930", "000660"]], ["f1", "gt", -1.0]])
    table = read.open_for_cluster(config, "row_group" if kind == "delta" else "file")
    with get_task_stream(client) as stream:
        frame = client.persist(table.frame())
        wait(frame)
        got = frame.compute()
    assert workers_of(stream, "read-table") == set(client.scheduler_info()["workers"])  # both read
    expected = table.source.read(columns.projection(table.read, table.features, table.source.schema)).to_pandas()
    order = ["ts", "symbol", "f0"]
    pd.testing.assert_frame_equal(got.sort_values(order).reset_index(drop=True),
                                  expected.sort_values(order).reset_index(drop=True)[got.columns], check_dtype=False)
    assert got["f0"].dtype == np.float32 and got["symbol"].iloc[0] in ("005930", "000660")  # strings stay strings
    if kind == "delta":
        assert table.lineage["data.source.version"] == 1


def test_the_filter_prunes_files_on_the_driver(ticks):
    everything = read.open_for_cluster(cfg(ticks["parquet"]))
    one_day = read.open_for_cluster(cfg(ticks["parquet"], filters=[["date", "eq", "2026-01-03"]]))
    assert 0 < len(one_day.pieces) < len(everything.pieces)
    assert all("date=2026-01-03" in p.path for p in one_day.pieces)


@pytest.mark.parametrize("limit", [0, 1000])
def test_time_split_and_categories_match_one_process(dask_client, ticks, limit):
    client, _ = dask_client
    config = cfg(ticks["parquet"], limit=limit, columns=["f0", "f1", "venue", "symbol"])
    one = load_table(config)
    # The same row order as one process for data.limit: one file per partition, in the dataset's order.
    on = ingest.load(config, "classification", client)
    for key in ("data.rows.read", "data.rows.dropped_missing_target", "data.split.method",
                *(f"data.split.{p}.time_{m}" for p in ("train", "validation", "test") for m in ("min", "max"))):
        assert str(on.params[key]) == str(one.params[key]), key
    sizes = {name: int(part.shape[0].compute()) for name, part in on.parts().items()}
    assert sizes == {"train": len(one.y_train), "validation": len(one.y_val), "test": len(one.y_test)}
    assert on.class_names == one.class_names
    assert on.categories == one.categories
    train = on.train.compute()
    assert list(train["venue"].cat.categories) == one.categories["venue"]
    assert np.bincount(train[ingest.TARGET], minlength=3).tolist() == np.bincount(one.y_train, minlength=3).tolist()


def test_kth_is_exact_across_histogram_passes(dask_client, monkeypatch):
    import dask.dataframe as dd

    client, _ = dask_client
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 10**15, 5000), np.full(2000, 777), rng.integers(-50, 50, 3000)])
    series = client.persist(dd.from_pandas(pd.Series(values, name="t"), npartitions=4))
    monkeypatch.setattr(splits, "GATHER", 50)  # force the histogram passes on a small table
    ordered = np.sort(values)
    for k in (0, 1, 2999, 3000, 4000, 7000, len(values) - 1):
        assert splits.kth(series, k, int(ordered[0]), int(ordered[-1]), len(values)) == ordered[k]


def test_random_and_column_splits(dask_client, ticks):
    client, _ = dask_client
    on = ingest.load(cfg(ticks["parquet"], split="random"), "classification", client)
    sizes = [int(p.shape[0].compute()) for p in on.parts().values()]
    assert all(sizes) and abs(sizes[2] / sum(sizes) - 0.2) < 0.05
    again = ingest.load(cfg(ticks["parquet"], split="random"), "classification", client)
    assert sizes == [int(p.shape[0].compute()) for p in again.parts().values()]  # seeded
    with pytest.raises(UserError, match="split column 'venue' has values other than"):
        ingest.load(cfg(ticks["parquet"], split="column", split_column="venue"), "classification", client)


def test_regression_target_and_empty_filter(dask_client, ticks):
    client, _ = dask_client
    on = ingest.load(cfg(ticks["parquet"], target="next_return"), "regression", client)
    assert on.train[ingest.TARGET].dtype == np.float64 and on.class_names == []
    with pytest.raises(UserError, match="no rows in parquet"):
        ingest.load(cfg(ticks["parquet"], filters=[["f0", "gt", 1e9]]), "classification", client)


def test_metrics_from_partial_sums_equal_scikit_learns(dask_client):
    import dask.dataframe as dd

    rng = np.random.default_rng(5)
    for k in (2, 3):
        n = 3000
        proba = rng.dirichlet(np.ones(k), n)
        y = np.where(rng.random(n) < 0.7, proba.argmax(axis=1), rng.integers(0, k, n))
        frame = pd.DataFrame({ingest.TARGET: y, **{f"p{i}": proba[:, i] for i in range(k)}})
        got = metrics.finish(metrics.sums(dd.from_pandas(frame, npartitions=3), "classification", k, ingest.TARGET),
                             "classification", "test")
        want = evaluate.scores("classification", y, proba, k, "test")
        assert set(got) == set(want)
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=2e-4), key
    y = rng.normal(size=2000)
    frame = pd.DataFrame({ingest.TARGET: y, "prediction": y + rng.normal(scale=0.3, size=2000)})
    got = metrics.finish(metrics.sums(dd.from_pandas(frame, npartitions=4), "regression", 0, ingest.TARGET),
                         "regression", "test")
    want = evaluate.scores("regression", y, frame["prediction"].to_numpy(), 0, "test")
    assert got == pytest.approx(want, rel=1e-9)
