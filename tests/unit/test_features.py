"""Tick features (mlrecipes.features): every kind against an independent pandas computation, no
look-ahead, input order, scoring a slice with its lookback, and every bad definition."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from mlrecipes.errors import UserError
from mlrecipes.features import FeatureSet, Lookback

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import ticks  # noqa: E402  (the fixture generator)

START = datetime(2026, 1, 5, 9, 0, 0)


def tick_table(rows: int = 600, seed: int = 3, ties: bool = True, shuffle: bool = True) -> pd.DataFrame:
    """Three symbols over three days, irregular ticks (some sharing a second when `ties`), a positive price walk,
    an integer size with a gap or two, a string venue; in a shuffled row order."""
    rng = np.random.default_rng(seed)
    symbol = rng.choice(["A", "B", "C"], rows)
    # ten minutes a day: windows of 30 s to 5 min hold a few to dozens of ticks
    seconds = rng.integers(0, 600, rows) if ties else rng.choice(600 * 100, rows, replace=False) / 100
    df = pd.DataFrame({"symbol": symbol, "ts": pd.Timestamp(START) + pd.to_timedelta(seconds, unit="s")})
    df["ts"] += pd.to_timedelta(rng.integers(0, 3, rows), unit="D")  # three days: day-of-week varies
    df = df.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    df["price"] = 100 * np.exp(pd.Series(0.002 * rng.normal(size=rows)).groupby(df["symbol"]).cumsum())
    df["size"] = rng.integers(1, 50, rows).astype(float)
    df.loc[rng.random(rows) < 0.05, "size"] = np.nan  # gaps: NaN counts as missing in windows
    df["venue"] = rng.choice(["KRX", "NXT"], rows)
    return df.sample(frac=1, random_state=seed).reset_index(drop=True) if shuffle else df


def arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def features(define: list[dict], key="symbol", order="ts") -> FeatureSet:
    return FeatureSet.from_config({"key": key, "define": define}, order)


EVERY_KIND = [
    {"name": "lag_2", "op": "lag", "column": "price", "n": 2},
    {"name": "diff_3", "op": "diff", "column": "price", "n": 3},
    {"name": "ratio_1", "op": "ratio", "column": "size", "n": 1},
    {"name": "ret_1", "op": "log_return", "column": "price", "n": 1},
    {"name": "ret_5", "op": "log_return", "column": "price", "n": 5},
    {"name": "mean_4", "op": "mean", "column": "size", "n": 4},
    {"name": "std_5", "op": "std", "column": "price", "n": 5},
    {"name": "min_3", "op": "min", "column": "size", "n": 3, "min_periods": 1},
    {"name": "max_3", "op": "max", "column": "price", "n": 3},
    {"name": "sum_6", "op": "sum", "column": "size", "n": 6},
    {"name": "mean_30s", "op": "mean", "column": "size", "span": "30s"},
    {"name": "std_5m", "op": "std", "column": "price", "span": "5m"},
    {"name": "min_5m", "op": "min", "column": "price", "span": "5m"},
    {"name": "max_2m", "op": "max", "column": "size", "span": "2m"},
    {"name": "sum_1m", "op": "sum", "column": "size", "span": "1m"},
    {"name": "count_1m", "op": "count", "span": "1m"},
    {"name": "vol_5m", "op": "std", "column": "ret_1", "span": "5m"},  # a window over a feature
    {"name": "mean_ret_10", "op": "mean", "column": "ret_1", "n": 10},
    {"name": "tod", "op": "time_of_day"},
    {"name": "dow", "op": "day_of_week"},
    {"name": "z", "expr": "(ret_1 - mean_ret_10) / vol_5m"},
    {"name": "range", "expr": "-(max_3 - min_5m) * 2 + abs(diff_3) / price + log(price)"},
]


def pandas_reference(df: pd.DataFrame) -> pd.DataFrame:
    """EVERY_KIND written the way a pandas user would: groupby / shift / rolling, independently."""
    d = df.reset_index(names="input_row").sort_values(["symbol", "ts", "input_row"], kind="stable")
    g = d.groupby("symbol", sort=False)
    out = pd.DataFrame(index=d.index)
    out["lag_2"] = g["price"].shift(2)
    out["diff_3"] = d["price"] - g["price"].shift(3)
    out["ratio_1"] = d["size"] / g["size"].shift(1)
    out["ret_1"] = np.log(d["price"] / g["price"].shift(1))
    out["ret_5"] = np.log(d["price"] / g["price"].shift(5))

    def rows(column, n, how, min_periods=None):
        rolled = g[column].rolling(n, min_periods=min_periods).agg(how)
        return rolled.reset_index(level=0, drop=True)

    def span(frame, column, width, how):
        def one(part):
            series = part.set_index("ts")[column].rolling(width, closed="right").agg(how)
            return pd.Series(series.to_numpy(), index=part.index)
        return pd.concat([one(part) for _, part in frame.groupby("symbol", sort=False)])

    out["mean_4"] = rows("size", 4, "mean")
    out["std_5"] = rows("price", 5, "std")
    out["min_3"] = rows("size", 3, "min", min_periods=1)
    out["max_3"] = rows("price", 3, "max")
    out["sum_6"] = rows("size", 6, "sum")
    out["mean_30s"] = span(d, "size", "30s", "mean")
    out["std_5m"] = span(d, "price", "5min", "std")
    out["min_5m"] = span(d, "price", "5min", "min")
    out["max_2m"] = span(d, "size", "2min", "max")
    out["sum_1m"] = span(d, "size", "1min", "sum")
    out["count_1m"] = span(d.assign(one=1.0), "one", "1min", "count")
    with_ret = d.assign(ret_1=out["ret_1"])
    out["vol_5m"] = span(with_ret, "ret_1", "5min", "std")
    out["mean_ret_10"] = with_ret.groupby("symbol", sort=False)["ret_1"].rolling(10).mean().reset_index(level=0,
                                                                                                         drop=True)
    out["tod"] = d["ts"].dt.hour * 3600 + d["ts"].dt.minute * 60 + d["ts"].dt.second + d["ts"].dt.microsecond / 1e6
    out["dow"] = d["ts"].dt.day_of_week.astype(float)
    out["z"] = (out["ret_1"] - out["mean_ret_10"]) / out["vol_5m"]
    out["range"] = -(out["max_3"] - out["min_5m"]) * 2 + out["diff_3"].abs() / d["price"] + np.log(d["price"])
    return out.sort_index()  # back to the input's row order


def assert_same(ours: pa.Table, reference: pd.DataFrame, names: list[str]) -> None:
    for name in names:
        got = ours.column(name).to_numpy(zero_copy_only=False).astype(float)
        want = reference[name].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: missing values differ"
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)


def test_every_kind_matches_an_independent_pandas_computation():
    df = tick_table()
    fs = features(EVERY_KIND)
    out = fs.compute(arrow(df))
    assert out.column_names == [*df.columns, *fs.names]
    assert out.select(list(df.columns)).equals(arrow(df))  # the input's columns and row order unchanged
    assert df.duplicated(["symbol", "ts"]).sum() > 20  # ticks sharing a timestamp are exercised
    assert_same(out, pandas_reference(df), fs.names)


def test_the_ticks_example_computes_on_the_fixture_table():
    node = yaml.safe_load((REPO / "conf" / "features" / "ticks.yaml").read_text())
    fs = FeatureSet.from_config(node, "ts")
    df = ticks.make(rows=1200).to_pandas()
    out = fs.compute(arrow(df))
    assert fs.columns_needed() == ["symbol", "ts", "price"]
    assert fs.lookback() == Lookback(rows=20, span=timedelta(minutes=5))
    assert out.num_rows == len(df) and set(fs.names) <= set(out.column_names)
    d = df.sort_values(["symbol", "ts"], kind="stable")
    ret_20 = np.log(d["price"] / d.groupby("symbol")["price"].shift(20)).sort_index()
    np.testing.assert_allclose(out.column("ret_20").to_numpy(zero_copy_only=False), ret_20, equal_nan=True)


def test_none_is_no_features():
    fs = FeatureSet.from_config(yaml.safe_load((REPO / "conf" / "features" / "none.yaml").read_text()), "ts")
    table = arrow(tick_table(50))
    assert fs.names == [] and fs.columns_needed() == [] and fs.compute(table) is table
    assert FeatureSet.from_config(None).names == []


def test_shuffled_input_gives_the_same_features():
    df = tick_table(ties=False, shuffle=False)
    fs = features(EVERY_KIND)
    ordered = fs.compute(arrow(df)).to_pandas()
    perm = np.random.default_rng(11).permutation(len(df))
    shuffled = fs.compute(arrow(df.iloc[perm].reset_index(drop=True))).to_pandas()
    pd.testing.assert_frame_equal(shuffled, ordered.iloc[perm].reset_index(drop=True))


def test_a_window_stops_at_the_current_tick_even_among_ticks_of_one_timestamp():
    t = pd.Timestamp(START)
    df = pd.DataFrame({"symbol": "A", "ts": [t, t + pd.Timedelta("1s"), t + pd.Timedelta("1s"),
                                             t + pd.Timedelta("1s"), t + pd.Timedelta("40s")],
                       "price": [1.0, 2.0, 3.0, 4.0, 5.0]})
    fs = features([{"name": "s", "op": "sum", "column": "price", "span": "30s"},
                   {"name": "c", "op": "count", "span": "30s"}, {"name": "l", "op": "lag", "column": "price", "n": 1}])
    out = fs.compute(arrow(df)).to_pandas()
    assert out["s"].tolist() == [1.0, 3.0, 6.0, 10.0, 5.0]  # not 10 for each tie: later ties are the future
    assert out["c"].tolist() == [1.0, 2.0, 3.0, 4.0, 1.0]
    assert out["l"].tolist()[1:] == [1.0, 2.0, 3.0, 4.0]


def test_a_leak_canary_never_enters_a_feature():
    """`canary` is the next tick's price move (the label's future): no feature may read it, and the
    features of a tick do not change when anything after it changes."""
    df = tick_table(ties=True, shuffle=False)
    df["canary"] = df.groupby("symbol")["price"].shift(-1) - df["price"]
    define = [*EVERY_KIND, {"name": "canary_mean", "op": "mean", "column": "canary", "span": "5m"},
              {"name": "canary_lag", "op": "lag", "column": "canary", "n": 1}]
    fs = features(define)
    before = fs.compute(arrow(df)).to_pandas()
    cut = pd.Timestamp(START) + pd.Timedelta(days=1, hours=1)
    later = df["ts"] > cut
    changed = df.copy()
    rng = np.random.default_rng(5)
    changed.loc[later, ["price", "size", "canary"]] = rng.uniform(1, 1000, (later.sum(), 3))
    changed.loc[later, "ts"] += pd.to_timedelta(rng.integers(0, 600, later.sum()), unit="s")  # moved, still later
    extra = changed[later].head(30).assign(ts=cut + pd.Timedelta("1ms"))  # new ticks right after the cut
    after = fs.compute(arrow(pd.concat([changed, extra], ignore_index=True))).to_pandas()
    earlier = ~later.to_numpy()
    for name in fs.names:
        pd.testing.assert_series_equal(after[name].iloc[: len(df)][earlier], before[name][earlier], obj=name)
    # the canary's own features only ever see canaries at or before the tick
    assert "canary" not in features(EVERY_KIND).columns_needed()


def read_with_lookback(df: pd.DataFrame, start: pd.Timestamp, lookback: Lookback) -> pd.DataFrame:
    """What scoring reads: per symbol, the ticks from start - span on, and `rows` ticks before those;
    in the source's order (ticks sharing a timestamp keep their order: the tie-break)."""
    parts = []
    for _, part in df.sort_values(["symbol", "ts"], kind="stable").groupby("symbol"):
        edge = start - pd.Timedelta(lookback.span)
        first = max(int((part["ts"] <= edge).sum()) - lookback.rows, 0)
        parts.append(part.iloc[first:])
    return pd.concat(parts).sort_index()


def test_a_slice_with_its_lookback_gets_the_features_training_computed():
    df = tick_table(ties=True, shuffle=True)
    fs = features(EVERY_KIND)
    whole = fs.compute(arrow(df)).to_pandas()
    start = pd.Timestamp(START) + pd.Timedelta(days=2, minutes=5)  # mid-session: the 5 m windows are full
    table = read_with_lookback(df, start, fs.lookback())
    assert len(table) < len(df)
    piece = fs.compute_slice(arrow(table), start.to_pydatetime())
    expected = whole.loc[table.index[table["ts"] >= start]].reset_index(drop=True)
    assert piece.short_rows == 0 and piece.short_by_feature == {}
    pd.testing.assert_frame_equal(piece.table.to_pandas(), expected)


def test_a_slice_without_its_lookback_gets_missing_features_never_shorter_windows():
    df = tick_table(ties=True, shuffle=True)
    fs = features(EVERY_KIND)
    whole = fs.compute(arrow(df)).to_pandas()
    start = pd.Timestamp(START) + pd.Timedelta(days=2, minutes=5)  # mid-session: the 5 m windows are full
    short = Lookback(rows=2, span=timedelta(seconds=20))  # less than the 10 rows and 5 minutes it needs
    table = read_with_lookback(df, start, short)
    piece = fs.compute_slice(arrow(table), str(start))
    got = piece.table.to_pandas()
    expected = whole.loc[table.index[table["ts"] >= start]].reset_index(drop=True)
    assert 0 < piece.short_rows < len(got)
    assert piece.short_by_feature["vol_5m"] >= piece.short_by_feature["std_5m"] > 0
    assert "tod" not in piece.short_by_feature and "lag_2" not in piece.short_by_feature
    for name in fs.names:
        present = got[name].notna()
        # a value is training's value, or missing where its window reaches before the history read
        pd.testing.assert_series_equal(got[name][present], expected[name][present], obj=name)
        blanked = got[name].isna() & expected[name].notna()
        assert blanked.sum() <= piece.short_by_feature.get(name, 0)
    assert sum(got[n].isna().sum() - expected[n].isna().sum() for n in fs.names) > 0


def test_lookback_follows_chains_and_the_definition_round_trips():
    fs = features(EVERY_KIND)
    assert fs.lookback() == Lookback(rows=9 + 1, span=timedelta(minutes=5))  # mean_ret_10 of ret_1; vol_5m
    again = FeatureSet.from_dict(fs.to_dict())
    assert again.to_dict() == fs.to_dict() and again.names == fs.names and again.features == fs.features
    assert fs.to_dict()["define"][10] == {"name": "mean_30s", "op": "mean", "column": "size", "span": "30s"}
    assert features([{"name": "a", "op": "count", "span": "90s"}]).lookback() == Lookback(span=timedelta(seconds=90))
    assert features([{"name": "a", "op": "lag", "column": "price", "n": 3}]).lookback() == Lookback(rows=3)


SCHEMA_ERRORS = [
    ({"define": [{"name": "a", "op": "lag", "column": "bid", "n": 1}]},
     "reads column 'bid', which the table lacks (columns: symbol, ts, price, size, venue)"),
    ({"define": [{"name": "a", "op": "mean", "column": "venue", "n": 3}]}, "mean needs a numeric column"),
    ({"define": [{"name": "a", "op": "lag", "column": "venue", "n": 1}]}, "lag needs a numeric column"),
    ({"key": "ticker", "define": [{"name": "a", "op": "lag", "column": "price", "n": 1}]},
     "features.key 'ticker' is not a column"),
    ({"order": "time", "define": [{"name": "a", "op": "lag", "column": "price", "n": 1}]},
     "features.order 'time' is not a column"),
    ({"order": "venue", "define": [{"name": "a", "op": "lag", "column": "price", "n": 1}]},
     "the order must be a timestamp"),
    ({"define": [{"name": "a", "op": "lag", "column": "price", "n": 1}, {"name": "a", "op": "diff", "column":
                 "price", "n": 1}]}, "two features are named 'a'"),
    ({"define": [{"name": "price", "op": "lag", "column": "price", "n": 1}]}, "has the name of a column"),
    ({"define": [{"name": "a", "op": "mean", "column": "b", "n": 3}, {"name": "b", "op": "lag", "column": "price",
                 "n": 1}]}, "refers to 'b', a feature defined after it"),
    ({"define": [{"name": "a", "expr": "price / b"}, {"name": "b", "op": "lag", "column": "price", "n": 1}]},
     "refers to 'b', a feature defined after it"),
    ({"define": [{"name": "a", "expr": "price / venue"}]}, "reads 'venue', which has type large_string, not a number"),
    ({"order": "seq", "define": [{"name": "a", "op": "mean", "column": "price", "span": "30s"}]},
     "a time-span window needs a time column as the order, and 'seq' has type int64"),
    ({"order": "seq", "define": [{"name": "a", "op": "time_of_day"}]}, "needs a timestamp column"),
]


@pytest.mark.parametrize(("node", "message"), SCHEMA_ERRORS, ids=[m[:30] for _, m in SCHEMA_ERRORS])
def test_a_definition_the_table_cannot_serve_is_one_readable_line(node, message):
    df = tick_table(40)
    time_column = None if node.get("order") else "ts"
    fs = FeatureSet.from_config({"key": "symbol", **node}, time_column)
    table = arrow(df) if node.get("order") != "seq" else arrow(df.assign(seq=np.arange(len(df))))
    if node.get("order") == "seq":
        message = message.replace("(columns: symbol, ts, price, size, venue)", "")
    with pytest.raises(UserError) as caught:
        fs.compute(table)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_no_time_column_for_a_window_is_one_line():
    fs = FeatureSet.from_config({"key": "symbol", "define": [{"name": "a", "op": "sum", "column": "price",
                                                              "span": "1m"}]}, None)
    with pytest.raises(UserError, match="needs a time order: set data.time_column or features.order"):
        fs.validate(arrow(tick_table(20)).schema)


CONFIG_ERRORS = [
    ({"name": "a", "op": "median", "column": "price", "n": 3}, "op 'median' is not one of"),
    ({"name": "a", "op": "mean", "column": "price"}, "takes either n (rows) or span (time)"),
    ({"name": "a", "op": "mean", "column": "price", "n": 3, "span": "1m"}, "takes either n (rows) or span"),
    ({"name": "a", "op": "mean", "column": "price", "span": "30 seconds"}, "is not a duration like 30s"),
    ({"name": "a", "op": "lag", "column": "price", "n": 0}, "n must be an integer >= 1"),
    ({"name": "a", "op": "lag", "column": "price", "span": "1m"}, "give n, not span"),
    ({"name": "a", "op": "count", "n": 5}, "give span, not n"),
    ({"name": "a", "op": "lag", "n": 1}, "lag needs a column"),
    ({"name": "1a", "op": "lag", "column": "price", "n": 1}, "needs a name of letters"),
    ({"name": "a", "op": "lag", "column": "price", "n": 1, "window": 3}, "unknown key(s) window"),
    ({"name": "a", "expr": "__import__('os').system('true')"}, "unexpected \"'\""),
    ({"name": "a", "expr": "price ** 2"}, "expected a value, found '*'"),
    ({"name": "a", "expr": "eval(price)"}, "unknown function 'eval'"),
    ({"name": "a", "expr": "(price + 1"}, "expected ), found the end"),
    ({"name": "a", "expr": "price.real"}, "unexpected '.'"),
]


@pytest.mark.parametrize(("item", "message"), CONFIG_ERRORS, ids=[m[:30] for _, m in CONFIG_ERRORS])
def test_a_malformed_feature_is_one_readable_line(item, message):
    with pytest.raises(UserError) as caught:
        FeatureSet.from_config({"key": "symbol", "define": [item]}, "ts")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_tick_without_a_time_is_one_line():
    df = tick_table(30, shuffle=False)
    df.loc[3, "ts"] = pd.NaT
    with pytest.raises(UserError, match="1 rows have no 'ts' value"):
        features([{"name": "a", "op": "lag", "column": "price", "n": 1}]).compute(arrow(df))


def test_no_key_is_one_series_and_an_integer_order_serves_row_windows():
    df = tick_table(60, shuffle=False).assign(seq=lambda d: np.arange(len(d))[::-1])
    fs = FeatureSet.from_config({"order": "seq", "define": [{"name": "a", "op": "lag", "column": "price", "n": 1}]})
    out = fs.compute(arrow(df)).to_pandas()
    np.testing.assert_allclose(out["a"], df["price"].shift(-1), equal_nan=True)  # seq runs backwards
