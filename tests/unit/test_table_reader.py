"""Tables in: the pyarrow.dataset / deltalake reader, filters, types, splits, on the fixture tick table."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from mlrecipes import data
from mlrecipes.data import splits, tables
from mlrecipes.errors import UserError
from mlrecipes.tracking import redacted


def cfg(path, **extra):
    base = {"kind": "parquet", "name": "ticks", "path": str(path), "target": "direction", "columns": None,
            "exclude": ["date", "ts", "next_return", "up", "price"], "filters": None, "split": "random",
            "time_column": None, "split_column": None, "val_fraction": 0.1, "test_fraction": 0.2, "limit": 0, "seed": 1,
            "storage_options": {}}
    return OmegaConf.create({**base, **extra})


def with_window(data_cfg, **window):
    """A data group as a run composes it: beside the time window (conf/window), which the reader reads."""
    return OmegaConf.create({"data": data_cfg, "window": {"column": None, "interval": None, "length": None,
                                                          **window}}).data


def count(table, expression) -> int:
    return int(pc.sum(expression.cast(pa.int64())).as_py() or 0) if expression is not None else table.num_rows


def test_partitions_are_string_columns_and_filters_push_down(ticks):
    source = tables.open_table(cfg(ticks["parquet"], filters=[["date", "ge", "2026-01-04"],
                                                               ["symbol", "in", ["005930", "000660"]]]))
    assert source.schema.field("symbol").type == pa.string()  # "005930", not 5930
    # The filter prunes whole partitions: only files of the selected days and symbols are read.
    fragments = list(source.dataset.get_fragments(filter=source.filter))
    assert 0 < len(fragments) < len(source.dataset.files)
    assert all("date=2026-01-0" in f.path and ("005930" in f.path or "000660" in f.path) for f in fragments)
    got = source.read(["symbol", "date"])
    t = ticks["table"]
    expected = t.filter(pc.and_(pc.greater_equal(t["date"], "2026-01-04"),
                                pc.is_in(t["symbol"], pa.array(["005930", "000660"]))))
    assert got.num_rows == expected.num_rows > 0
    assert set(got["symbol"].to_pylist()) == {"005930", "000660"}


def test_filter_values_are_cast_to_the_column_type(ticks):
    source = tables.open_table(cfg(ticks["parquet"], filters=[["ts", "lt", "2026-01-03T12:00:00"], ["f0", "gt", 0]]))
    got = source.read(["ts", "f0"])
    assert got.num_rows > 0
    assert pc.max(got["ts"]).as_py() < pd.Timestamp("2026-01-03T12:00:00")
    assert pc.min(got["f0"]).as_py() > 0


def test_time_filters_on_columns_with_and_without_a_zone(tmp_path):
    """Spark / Delta TIMESTAMP columns carry UTC; TIMESTAMP_NTZ ones no zone. A value without an
    offset is UTC on either; one with an offset is that instant."""
    times = pd.to_datetime(["2026-01-02T23:30:00", "2026-01-03T00:30:00", "2026-01-03T09:30:00"])
    for zone in (None, "UTC", "Asia/Seoul"):
        ts = pa.array(times).cast(pa.timestamp("us"))
        if zone:
            ts = ts.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz=zone))
        path = tmp_path / f"t_{str(zone).replace('/', '_')}.parquet"
        pq.write_table(pa.table({"ts": ts, "f0": [1.0, 2.0, 3.0]}), path)
        for value, rows in (("2026-01-03T00:00:00", 2), ("2026-01-03", 2), ("2026-01-03T00:00:00Z", 2),
                            ("2026-01-03T09:00:00+09:00", 2), ("2026-01-03T18:00:00+09:00", 1)):
            got = tables.open_table(cfg(path, filters=[["ts", "ge", value]])).read(["f0"])
            assert got.num_rows == rows, (zone, value)


def test_a_rolling_window_keeps_the_interval_end_and_reaches_back_its_length():
    schema = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("date", pa.string())])
    week = "2026-01-05T00:00:00+00:00/2026-01-12T00:00:00+00:00"  # a weekly DAG run's data interval
    assert tables.interval_conditions(week, "ts", schema, length="30d") == [
        ["ts", "ge", "2025-12-13T00:00:00"], ["ts", "lt", "2026-01-12T00:00:00"]]
    assert tables.interval_conditions(week, "date", schema, length="2w") == [
        ["date", "ge", "2025-12-29"], ["date", "lt", "2026-01-12"]]
    assert tables.interval_conditions(week, "ts", schema, length="90m")[0] == ["ts", "ge", "2026-01-11T22:30:00"]
    # No interval: the window ends now (a date column: at today's midnight, UTC).
    today = pd.Timestamp.now(tz="UTC").normalize()
    assert tables.interval_conditions("", "date", schema, length="3d") == [
        ["date", "ge", (today - pd.Timedelta(days=3)).date().isoformat()], ["date", "lt", today.date().isoformat()]]
    start, end = (pd.Timestamp(c[2]) for c in tables.interval_conditions(None, "ts", schema, length="12h"))
    assert end - start == pd.Timedelta(hours=12)
    assert abs(pd.Timestamp.now(tz="UTC").tz_localize(None) - end) < pd.Timedelta(minutes=1)


@pytest.mark.parametrize(("length", "column", "message"), [
    ("30 days", "ts", "window.length '30 days': expected a length such as 30d"),
    ("0d", "ts", "expected a length such as 30d"),
    ("12h", "date", "'date' holds dates, so START and END must be midnights"),
    ("3d", None, "window.interval needs window.column"),
])
def test_bad_lengths(length, column, message):
    schema = pa.schema([("ts", pa.timestamp("us")), ("date", pa.string())])
    with pytest.raises(UserError, match=message):
        tables.interval_conditions("2026-01-05/2026-01-12", column, schema, length=length)


def test_a_length_without_its_column_names_the_length():
    schema = pa.schema([("ts", pa.timestamp("us"))])
    with pytest.raises(UserError, match=r"^window.length needs window.column \(the time or date column"):
        tables.interval_conditions("", None, schema, length="30d")


def test_training_reads_only_the_window(ticks):
    """The fixture's ticks span 2026-01-02..06: a 2-day window ending 2026-01-05 reads the 3rd and 4th."""
    ds = data.load(with_window(cfg(ticks["parquet"], split="time", time_column="ts"), column="ts", length="2d",
                               interval="2026-01-01T00:00:00+00:00/2026-01-05T00:00:00+00:00"))
    every = tables.open_table(cfg(ticks["parquet"])).read(["ts", "direction"])
    window = pc.and_(pc.greater_equal(every["ts"], pd.Timestamp("2026-01-03")),
                     pc.less(every["ts"], pd.Timestamp("2026-01-05")))
    assert ds.params["data.rows.read"] == pc.sum(window).as_py()
    assert ds.params["data.split.train.time_min"] >= "2026-01-03"
    assert ds.params["data.split.test.time_max"] < "2026-01-05"
    assert "ts >= '2026-01-03T00:00:00' and ts < '2026-01-05T00:00:00'" in ds.params["data.source.filter"]


@pytest.mark.parametrize(("filters", "message"), [
    ([["bid", "gt", 1]], "data.filters: unknown column 'bid'"),
    ([["ts", "ge", "yesterday"]], "data.filters: ['yesterday'] cannot be compared with column 'ts'"),
    ([["f0", "like", 1]], "data.filters: unknown operator 'like'"),
    ([["f0", "gt", "abc"]], "cannot be compared with column 'f0'"),
    ([["f0"]], "expected [column, op, value]"),
])
def test_bad_filters(ticks, filters, message):
    with pytest.raises(UserError) as err:
        tables.open_table(cfg(ticks["parquet"], filters=filters))
    assert message in str(err.value)


def test_delta_time_travel_logs_the_version_read(ticks):
    latest = tables.open_table(cfg(ticks["delta"], kind="delta"))
    first = tables.open_table(cfg(ticks["delta"], kind="delta", version=0))
    assert (latest.version, first.version) == (1, 0)
    days = lambda s: set(s.read(["date"])["date"].to_pylist())  # noqa: E731
    assert max(days(latest)) == "2026-01-06" and max(days(first)) == "2026-01-05"
    ds = data.load(cfg(ticks["delta"], kind="delta", version=0))
    assert ds.params["data.source.version"] == 0
    with pytest.raises(UserError, match="has no version 7"):
        tables.open_table(cfg(ticks["delta"], kind="delta", version=7))


def test_types_categories_and_missing_values(ticks):
    ds = data.load(cfg(ticks["parquet"]))
    assert ds.feature_names == ["venue", "f0", "f1", "f2", "f3", "f4", "f5", "symbol"]
    assert isinstance(ds.X_train["symbol"].dtype, pd.CategoricalDtype)
    assert ds.categories["symbol"] == sorted(ds.X_train["symbol"].dropna().unique().tolist())
    assert ds.X_train["f0"].dtype == np.float32 and ds.X_train["f0"].isna().any()  # gaps kept
    missing = ticks["table"]["direction"].null_count
    assert missing > 0 and ds.params["data.rows.dropped_missing_target"] == missing
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == ticks["table"].num_rows - missing
    assert ds.class_names == ["down", "flat", "up"]


def test_raw_timestamp_feature_is_a_clear_error(ticks):
    with pytest.raises(UserError, match="column 'ts' is a timestamp.*data.exclude or make it data.time_column"):
        data.load(cfg(ticks["parquet"], exclude=["date"]))


def test_unseen_category_becomes_missing(tmp_path):
    frame = pd.DataFrame({"sym": ["a", "b"] * 20 + ["new"] * 5, "x": np.arange(45, dtype=float),
                          "t": pd.date_range("2026-01-01", periods=45, freq="h"), "y": [0, 1] * 22 + [1]})
    frame.to_parquet(tmp_path / "t.parquet")
    ds = data.load(cfg(tmp_path / "t.parquet", target="y", exclude=[], split="time", time_column="t",
                       test_fraction=0.15))
    assert ds.categories["sym"] == ["a", "b"]
    assert ds.X_test["sym"].isna().sum() == 5  # "new" only after the training rows
    # Another model (a champion the gate re-scores) gets the rows as read, as scoring would give them.
    rows = data.test_rows(ds)
    assert rows["sym"].tolist() == ds.X_test["sym"].astype(object).where(ds.X_test["sym"].notna(), "new").tolist()
    assert rows["x"].dtype == np.float64 and rows["sym"].tolist()[-5:] == ["new"] * 5
    # Those are the test rows the run counts as unseen (test_unseen_rows, by_<column>'s unseen_rows).
    assert data.unseen_test_rows(ds).tolist() == [False] * (len(ds.y_test) - 5) + [True] * 5


def test_a_missing_value_is_no_unseen_category_and_no_string_feature_counts_nothing(tmp_path):
    frame = pd.DataFrame({"sym": ["a", "b"] * 20 + [None, "new", None, "b", "a"], "x": np.arange(45, dtype=float),
                          "t": pd.date_range("2026-01-01", periods=45, freq="h"), "y": [0, 1] * 22 + [1]})
    frame.to_parquet(tmp_path / "t.parquet")
    ds = data.load(cfg(tmp_path / "t.parquet", target="y", exclude=[], split="time", time_column="t",
                       test_fraction=0.15))
    assert data.unseen_test_rows(ds)[-5:].tolist() == [False, True, False, False, False]
    numbers = data.load(cfg(tmp_path / "t.parquet", target="y", exclude=["sym"], split="time", time_column="t",
                            test_fraction=0.15))
    assert data.unseen_test_rows(numbers) is None


def test_report_by_a_column_outside_the_features_is_read_beside_them(ticks):
    """data.report_by=date: the Hive partition the features exclude is read for the test rows, as
    read (strings), and never becomes a feature; an excluded integer column keeps its integers."""
    every = tables.open_table(cfg(ticks["parquet"])).read(["ts", "date", "up", "direction"])
    every = every.filter(pc.is_valid(every["direction"]))
    for kind, path in (("parquet", ticks["parquet"]), ("delta", ticks["delta"])):
        ds = data.load(cfg(path, kind=kind, version=None, split="time", time_column="ts", report_by="date"))
        assert "date" not in ds.feature_names and "date" not in ds.X_test.columns
        dates = data.test_rows(ds)["date"]
        assert len(dates) == len(ds.y_test) and all(isinstance(d, str) for d in dates)
        # The test split is the latest ticks: its dates are those of the ticks after the split's start.
        start = pd.Timestamp(ds.params["data.split.test.time_min"])
        later = every.filter(pc.greater_equal(every["ts"], start))
        assert sorted(set(dates)) == sorted(set(later["date"].to_pylist())) == ["2026-01-05", "2026-01-06"]
        groups = data.positions_by_value(dates)
        assert {d: len(at) for d, at in groups.items()} == {
            d: later.filter(pc.equal(later["date"], d)).num_rows for d in groups}
    ds = data.load(cfg(ticks["parquet"], report_by="up"))
    ups = data.test_rows(ds)["up"]
    assert "up" not in ds.feature_names and set(ups) == {0, 1} and all(type(u) is int for u in ups)


def test_report_by_a_feature_or_partition_keeps_leading_zeros(ticks):
    """A partition column, excluded from the features or one of them: its values as read either way."""
    symbols = {"005930", "000660", "035420", "051910"}
    ds = data.load(cfg(ticks["parquet"], exclude=["date", "ts", "next_return", "up", "symbol"], report_by="symbol"))
    assert "symbol" not in ds.feature_names and set(data.test_rows(ds)["symbol"]) == symbols
    ds = data.load(cfg(ticks["parquet"], report_by="symbol"))
    assert "symbol" in ds.feature_names and ds.test_columns == {}
    assert set(data.test_rows(ds)["symbol"]) == symbols  # a feature: served by test_strings, as before


def test_report_by_a_column_the_table_lacks_is_one_line_naming_the_columns(ticks):
    with pytest.raises(UserError) as err:
        data.load(cfg(ticks["parquet"], report_by="sector"))
    assert str(err.value).startswith("data.report_by: unknown column(s) sector; columns: ts, ")
    assert "date" in str(err.value) and "\n" not in str(err.value)


def test_time_split_has_no_look_ahead_even_with_tied_timestamps():
    times = np.repeat(np.arange(10), 7)  # 7 rows share each timestamp
    train, val, test = splits.time_split(times, 0.2, 0.25, "ts")
    assert times[train].max() < times[val].min() and times[val].max() < times[test].min()
    assert len(train) + len(val) + len(test) == len(times)
    # Tied rows go to the later split; when one timestamp is all there is, nothing is left to train on.
    with pytest.raises(UserError, match="leaves train empty: 6 rows over 2 distinct times"):
        splits.time_split(np.array([1, 1, 1, 2, 2, 2]), 0.5, 0.5, "ts")


def test_time_split_params_show_the_ranges(ticks):
    ds = data.load(cfg(ticks["parquet"], exclude=["date", "next_return", "up"], split="time", time_column="ts"))
    p = ds.params
    assert p["data.split.train.time_max"] < p["data.split.validation.time_min"]
    assert p["data.split.validation.time_max"] < p["data.split.test.time_min"]
    assert "ts" not in ds.feature_names


def test_column_split(tmp_path):
    part = ["train"] * 20 + ["validation"] * 5 + ["test"] * 5
    frame = pd.DataFrame({"x": np.arange(30.0), "y": [0, 1] * 15, "part": part})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = data.load(cfg(tmp_path / "t.csv", kind="csv", target="y", exclude=[], split="column", split_column="part"))
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (20, 5, 5)
    assert ds.feature_names == ["x"]


def test_regression_target(ticks):
    ds = data.load(cfg(ticks["parquet"], target="next_return", exclude=["date", "direction", "up", "ts"]),
                   task="regression")
    assert ds.objective == "regression" and ds.class_names == [] and ds.y_train.dtype == np.float64
    with pytest.raises(UserError, match="target column 'direction' is string, not a number"):
        data.load(cfg(ticks["parquet"], exclude=["date", "ts"]), task="regression")


@pytest.mark.parametrize(("extra", "message"), [
    ({"columns": ["f0", "nope"]}, "data.columns: unknown column(s) nope"),
    ({"exclude": ["nope"]}, "data.exclude: unknown column(s) nope"),
    ({"time_column": "nope", "split": "time"}, "data.time_column: unknown column(s) nope"),
    ({"filters": [["symbol", "eq", "999999"]]}, "the filter leaves none"),
    ({"split": "time"}, "data.split=time needs data.time_column"),
    ({"split": "shuffle"}, "unknown data.split 'shuffle'"),
    ({"target": "empty"}, "target column 'empty' has no values"),
])
def test_bad_table_input(tmp_path, ticks, extra, message):
    t = ticks["table"].append_column("empty", pa.nulls(ticks["table"].num_rows, pa.string()))
    import pyarrow.parquet as pq

    pq.write_table(t, tmp_path / "t.parquet")
    with pytest.raises(UserError) as err:
        data.load(cfg(tmp_path / "t.parquet", **{"exclude": ["date", "ts", "next_return", "up"], **extra}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_incompatible_parquet_files_are_one_line(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0], "y": [0, 1]}), tmp_path / "d" / "a.parquet")
    pq.write_table(pa.table({"x": ["a", "b"], "y": [0, 1]}), tmp_path / "d" / "b.parquet")
    with pytest.raises(UserError, match="cannot read parquet .*incompatible"):
        data.load(cfg(tmp_path / "d", target="y", exclude=[]))


def test_s3_reads_parquet_and_delta(s3, monkeypatch):
    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    parquet = data.load(cfg("s3://lake/ticks_parquet", filters=[["symbol", "eq", "005930"]]))
    assert parquet.source == "s3://lake/ticks_parquet" and set(parquet.X_train["symbol"].dropna()) == {"005930"}
    delta = data.load(cfg("s3://lake/ticks_delta", kind="delta", version=0))
    assert delta.params["data.source.version"] == 0


def test_s3_wrong_credentials_and_dead_endpoint_fail_fast(s3, monkeypatch):
    import socket
    import time

    for key, value in s3["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    for kind in ("parquet", "delta"):
        with pytest.raises(UserError, match="cannot read"):
            data.load(cfg(f"s3://lake/ticks_{kind}", kind=kind))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot read"):
        data.load(cfg("s3://lake/ticks_parquet"))
    assert time.monotonic() - started < 60


def test_credentials_never_reach_the_logged_config():
    conf = OmegaConf.create({"data": {"storage_options": {"endpoint_url": "http://x", "secret_access_key": "s3cr3t",
                                                          "access_key_id": "AKIA"}}})
    flat = str(OmegaConf.to_container(redacted(conf)))
    assert "s3cr3t" not in flat and "AKIA" not in flat and "http://x" in flat


def test_a_flat_directory_of_files_has_no_partition_columns(tmp_path):
    """Files side by side, no key=value folders: the columns keep their types (pyarrow's hive discovery
    reports every column there as a partition field)."""
    (tmp_path / "flat").mkdir()
    for name, rows in (("a", [1, 2]), ("b", [3, 4])):
        pq.write_table(pa.table({"ts": pa.array(rows, pa.timestamp("us")), "x": [float(r) for r in rows],
                                 "y": [r % 2 for r in rows]}), tmp_path / "flat" / f"{name}.parquet")
    source = tables.open_table(cfg(tmp_path / "flat", target="y", exclude=["ts"]))
    assert source.partition_columns == ()
    got = source.read(["ts", "x"])
    assert got.schema.field("ts").type == pa.timestamp("us") and got.num_rows == 4


def test_hive_names_are_the_key_folders_of_a_file():
    assert tables.hive_names(["/d/t/date=2026-01-02/symbol=A/part-0.parquet"], "/d/t/") == ["date", "symbol"]
    assert tables.hive_names(["bucket/t/part-0.parquet"], "bucket/t") == []


def test_rows_without_a_target_dropped_column_by_column_give_the_filtered_tables_frames(ticks):
    """from_arrow drops rows without a target a column at a time (filtering the table would copy it
    whole): the parts equal those of the table filtered beforehand, each column its own block."""
    from mlrecipes.data import ingest

    config = cfg(ticks["parquet"], split="time", time_column="ts", exclude=["date", "next_return", "up", "price"])
    table = tables.open_table(config).read(None).drop_columns(["date"])  # the partition column: excluded
    features = ["venue", "f0", "f1", "f2", "f3", "f4", "f5", "symbol"]
    assert table["direction"].null_count > 0
    filtered = table.filter(pc.is_valid(table["direction"]))

    def load(arrow):
        return ingest.from_arrow(config, "classification", lambda: arrow, features, uri="t", describe="t", lineage={})

    dropping, plain = load(table), load(filtered)
    assert dropping.params["data.rows.dropped_missing_target"] == table["direction"].null_count
    assert plain.params["data.rows.dropped_missing_target"] == 0
    for part in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(dropping, f"X_{part}"), getattr(plain, f"X_{part}"))
        np.testing.assert_array_equal(getattr(dropping, f"y_{part}"), getattr(plain, f"y_{part}"))
        assert getattr(dropping, f"X_{part}")._mgr.nblocks == len(features)  # no stacked copy of the floats
    assert dropping.test_strings["symbol"].tolist() == plain.test_strings["symbol"].tolist()


@pytest.mark.parametrize("missing", [[None, np.nan], [None, None]])  # nulls only: the mask is null there, not false
def test_a_float_target_drops_null_and_nan_rows(missing):
    from mlrecipes.data import ingest

    arrow = pa.table({"x": pa.array(np.arange(40.0)), "y": pa.array([1.0, *missing, 2.0] * 10)})
    config = cfg("t", target="y", exclude=[])
    ds = ingest.from_arrow(config, "regression", lambda: arrow, ["x"], uri="t", describe="t", lineage={})
    assert ds.params["data.rows.dropped_missing_target"] == 20
    kept = np.concatenate([ds.X_train["x"], ds.X_val["x"], ds.X_test["x"]])
    assert sorted(kept.tolist()) == [float(x) for x in range(40) if x % 4 in (0, 3)]


def test_a_fit_drops_the_training_rows_only_of_data_read_for_it(ticks):
    ds = data.load(cfg(ticks["parquet"]))
    ds.release_training_rows()  # read for a sweep's several fits (the default): kept
    assert ds.X_train is not None
    ds.single_use = True  # what recipe.steps sets on the data it reads for its one fit
    ds.release_training_rows()
    assert ds.X_train is None and len(ds.y_train) > 0
