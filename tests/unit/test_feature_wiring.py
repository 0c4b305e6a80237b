"""Tick features wired in (#34): the ingest computes the features group's definition before the split,
a fitted transform is fitted on the training rows only, and scoring a slice computes the model's
definition over the slice and the lookback it reads, with the values training computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from omegaconf import OmegaConf

from mlrecipes import config, data
from mlrecipes.data import tables
from mlrecipes.errors import UserError
from mlrecipes.features import FeatureSet
from mlrecipes.scoring.inputs import featured_chunks
from mlrecipes.scoring.model import Model
from mlrecipes.scoring.settings import Settings
from mlrecipes.scoring.windowed import FeatureReport

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "projects" / "lightgbm"
TICKS = FeatureSet.from_config(yaml.safe_load((REPO / "conf" / "features" / "ticks.yaml").read_text()), "ts")


def compose(path, *overrides):
    return config.compose(PROJECT, ["data=ticks", f"data.path={path}", *overrides])


def whole(table: pa.Table, fs: FeatureSet = TICKS) -> pd.DataFrame:
    """The definition computed on the whole table at once: what training computes."""
    return fs.compute(table).to_pandas()


# ------------------------------------------------------------------ config
def test_the_ticks_group_brings_its_features_and_any_data_group_can_take_them(ticks):
    assert compose(ticks["parquet"]).features.key == "symbol"
    assert compose(ticks["parquet"], "features=none").features.define == []
    other = config.compose(PROJECT, ["data=parquet", "features=ticks", "data.path=x", "data.target=y"])
    assert len(other.features.define) == 12
    assert config.compose(PROJECT, []).features.define == []  # mnist: none


# ------------------------------------------------------------------ ingest
def test_ingest_computes_the_features_before_the_split_and_reads_what_they_need(ticks):
    ds = data.load(compose(ticks["parquet"]).data)
    assert ds.feature_names[-12:] == TICKS.names and "price" not in ds.feature_names  # read, excluded
    assert ds.feature_set == TICKS.to_dict()
    t = ticks["table"]
    expected = whole(t)[pc.is_valid(t["direction"]).to_numpy(zero_copy_only=False)]
    # every row's features, whatever split it fell in, are those of the whole table (history kept)
    for name in ("ret_20", "vol_1m", "range_pos_5m", "mean_ret_20"):
        got = np.sort(np.concatenate([X[name].to_numpy() for X in (ds.X_train, ds.X_val, ds.X_test)]))
        np.testing.assert_array_equal(got, np.sort(expected[name].to_numpy(dtype=np.float32)), err_msg=name)
    # the first test rows are no start of a series: their 20-tick returns exist
    assert ds.X_test["ret_20"].notna().all()


def test_a_leak_canary_never_reaches_a_feature_through_ingest(ticks, tmp_path):
    """`canary`: the next tick's direction as a number, the label's future. Changing every row after the
    training rows (prices, canary, returns) leaves the training rows' features as they were."""
    import ticks as generator

    table = ticks["table"]
    up = pc.cast(pc.equal(table["direction"], "up"), pa.float64()).combine_chunks()
    table = table.append_column("canary", pa.concat_arrays([up[1:], pa.array([0.0])]))
    exclude = "data.exclude=[date,ts,next_return,up,price,canary]"
    before = data.load(compose(generator.write_parquet(table, tmp_path / "before"), exclude).data)
    cut = pa.scalar(pd.Timestamp(before.params["data.split.train.time_max"]), pa.timestamp("us"))
    later = pc.greater(table["ts"], cut).to_numpy(zero_copy_only=False)
    assert 0 < later.sum() < table.num_rows
    rng = np.random.default_rng(1)
    changed = table
    for name in ("price", "canary", "next_return"):
        values = np.where(later, rng.uniform(1, 1e6, table.num_rows), table[name].to_numpy(zero_copy_only=False))
        changed = changed.set_column(changed.schema.get_field_index(name), name, pa.array(values))
    after = data.load(compose(generator.write_parquet(changed, tmp_path / "after"), exclude).data)
    assert "canary" not in before.feature_names and not any("canary" in f.inputs for f in TICKS.features)
    pd.testing.assert_frame_equal(after.X_train, before.X_train)
    assert not after.X_test[TICKS.names].equals(before.X_test[TICKS.names])  # the later rows did change


@pytest.mark.parametrize(("overrides", "message"), [
    (["features.define=[{name:a,op:lag,column:bid,n:1}]"], "feature 'a' reads column 'bid', which the table lacks"),
    (["features.define=[{name:a,op:mean,column:venue,n:3}]"], "mean needs a numeric column, and 'venue'"),
    (["features.key=ticker"], "features.key 'ticker' is not a column of the table"),
    (["features.order=seq"], "features.order 'seq' is not a column of the table"),
    (["features.define=[{name:a,op:lag,column:price,n:1},{name:a,op:diff,column:price,n:1}]"],
     "two features are named 'a'"),
    (["features.define=[{name:a,expr:'b*2'},{name:b,op:lag,column:price,n:1}]"],
     "feature 'a' refers to 'b', a feature defined after it"),
    (["data.time_column=null", "data.split=random", "features.define=[{name:a,op:sum,column:price,span:1m}]"],
     "feature 'a' needs a time order: set data.time_column or features.order"),
    (["task=regression", "data.target=next_return", "data.exclude=[date,ts,direction,up,price]",
      "features.define=[{name:a,op:mean,column:next_return,n:5}]"],
     "feature 'a' reads the target 'next_return' at its own tick: the label would leak"),
])
def test_a_definition_the_table_cannot_serve_is_one_line_before_anything_is_read(ticks, monkeypatch, overrides,
                                                                                  message):
    cfg = compose(ticks["parquet"], *overrides)
    monkeypatch.setattr(tables.TableSource, "read", lambda *a, **k: pytest.fail("read before the check"))
    with pytest.raises(UserError) as caught:
        data.load(cfg.data, str(cfg.get("task") or "classification"))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_fitted_transform_is_fitted_on_the_training_rows_only(ticks):
    scaler = "features.transform={_target_:sklearn.preprocessing.StandardScaler}"
    plain, scaled = (data.load(compose(ticks["parquet"], *extra).data) for extra in ([], [scaler]))
    assert scaled.transform_columns == [n for n in plain.feature_names if n not in ("venue", "symbol")]
    np.testing.assert_allclose(scaled.transform.mean_, plain.X_train[scaled.transform_columns].mean(), rtol=1e-4)
    assert abs(float(scaled.X_train["ret_1"].mean())) < 1e-5 and abs(float(scaled.X_test["ret_1"].mean())) > 1e-4
    # whoever scores the test rows as scoring would gets them as read: the model applies its transform
    pd.testing.assert_frame_equal(scaled.scoring_input(), plain.scoring_input())


@pytest.mark.parametrize(("node", "message"), [
    ({"_target_": "sklearn.preprocessing.NoSuchScaler"}, "features.transform: cannot make sklearn.preprocessing"),
    ({"_target_": "sklearn.decomposition.PCA", "n_components": 2}, "PCA cannot fit the training rows: Input X "
     "contains NaN"),
    ({"_target_": "sklearn.impute.SimpleImputer", "add_indicator": True}, "SimpleImputer maps 6 columns to 12: "
     "a transform must map each column to one"),
    ("StandardScaler", "features.transform must be a mapping with a _target_"),
])
def test_a_bad_transform_is_one_line(ticks, node, message):
    cfg = compose(ticks["parquet"], "features=none")
    OmegaConf.update(cfg, "features.transform", node, force_add=True)
    with pytest.raises(UserError) as caught:
        data.load(cfg.data)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# ------------------------------------------------------------------ scoring a slice
def model_of(ds) -> Model:
    return Model("ticks-lightgbm", "1", "run", "models:/ticks-lightgbm/1", "classification", ds.class_names,
                 list(ds.feature_names), {}, None, ds.categories, ds.feature_set)


def score_slice(path, ds, day: str, max_short: float | None = 0.01, filters=None, batch_size: int = 97):
    cfg = compose(path)
    source = tables.open_table(cfg.data)
    conditions = [*(filters or []), ["date", "eq", day]]
    source.filter, source.filter_text = tables.filter_expression(conditions, source.schema)
    report = FeatureReport()
    settings = Settings("overwrite-slice", "parquet", batch_size, None, "/nowhere", False, max_short)
    chunks = list(featured_chunks(source, model_of(ds), ["ts", "symbol"], "direction", settings, None,
                                  filters or [], report))
    frame = pd.concat([pd.concat([c.passthrough.to_pandas(), c.model_input.drop(columns=["symbol"])], axis=1)
                       for c in chunks], ignore_index=True)
    return frame, report


@pytest.fixture(scope="module")
def trained(ticks):
    return data.load(compose(ticks["parquet"]).data)


def test_scoring_a_day_computes_the_features_training_computed_for_its_first_ticks(ticks, trained):
    got, report = score_slice(ticks["parquet"], trained, "2026-01-04")
    t = ticks["table"]
    expected = whole(t).assign(ts=t["ts"].to_pandas())
    expected = expected[expected["date"] == "2026-01-04"].reset_index(drop=True)
    assert len(got) == len(expected) == report.slice_rows > 0  # the slice only: no history row is scored
    assert report.short_rows == 0 and report.computed
    # the lookback read: the span before the slice and 20 ticks per symbol, not the table's history
    day3 = int(pc.sum(pc.equal(t["date"], "2026-01-03")).as_py())
    assert 4 * 20 <= report.history_rows <= day3  # here, across the night: yesterday's session at most
    got = got.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    expected = expected.sort_values(["symbol", "ts"], kind="stable").reset_index(drop=True)
    for name in TICKS.names:  # the same windows; a rolling sum runs from another first row: 1e-12, not bits
        np.testing.assert_allclose(got[name].to_numpy(dtype=float), expected[name].to_numpy(dtype=float),
                                   rtol=1e-11, atol=0, equal_nan=True, err_msg=name)
    first = got.groupby("symbol").head(3)  # each symbol's first ticks of the day, windows over yesterday's
    assert first["ret_20"].notna().all()


def test_the_history_keeps_the_data_groups_filters(ticks, trained):
    """A filter of the data group (training read only these symbols) bounds the history as it did the
    training rows: the features are those of the filtered table."""
    filters = [["symbol", "in", ["005930", "000660"]]]
    got, report = score_slice(ticks["parquet"], trained, "2026-01-04", filters=filters)
    t = ticks["table"]
    t = t.filter(pc.is_in(t["symbol"], pa.array(["005930", "000660"])))
    expected = whole(t)
    expected = expected[expected["date"] == "2026-01-04"]
    assert set(got["symbol"]) == {"005930", "000660"} and report.short_rows == 0
    np.testing.assert_allclose(np.sort(got["ret_20"].to_numpy(dtype=float)),
                               np.sort(expected["ret_20"].to_numpy(dtype=float)), rtol=1e-11)


def test_a_slice_whose_lookback_is_not_in_the_table_is_one_line_or_missing_features(ticks, trained):
    with pytest.raises(UserError) as caught:
        score_slice(ticks["parquet"], trained, "2026-01-02")  # the table's first day: no history before it
    text = str(caught.value)
    assert text.startswith("the slice's lookback is not in the table: ") and "\n" not in text
    assert "its features need 20 rows and 5m of each symbol before its ticks" in text
    assert "the table holds fewer than 20 rows before 2026-01-02 08:5" in text
    assert "for 4 symbols (000660: 0, 005930: 0, 035420: 0, 051910: 0)" in text
    assert "more than scoring.max_short_fraction 0.01; the output is unchanged" in text
    got, report = score_slice(ticks["parquet"], trained, "2026-01-02", max_short=None)
    assert 0 < report.short_rows < len(got) and report.short_by_feature["ret_20"] == report.short_rows
    first = got.sort_values("ts", kind="stable").groupby("symbol").head(20)
    assert first["ret_20"].isna().all()  # never a shorter window than training's: missing
    assert report.metrics()["short_rows"] == report.short_rows


def test_scoring_a_table_that_lost_a_column_a_feature_reads_is_one_line(ticks, trained, tmp_path):
    import ticks as generator

    path = generator.write_parquet(ticks["table"].drop_columns(["price"]), tmp_path)
    with pytest.raises(UserError, match="feature 'ret_1' reads column 'price', which the table lacks"):
        score_slice(path, trained, "2026-01-04")


# ------------------------------------------------------------------ the gate
def test_the_gate_rescores_only_a_champion_with_the_same_features(trained, tracking_uri, monkeypatch):
    import mlflow

    from mlrecipes import evaluate, recipe

    loaded = {}

    def model(feature_set):
        info = mlflow.models.Model()
        info.add_flavor("python_function", config={"feature_set": feature_set} if feature_set else {})
        return info

    monkeypatch.setattr(mlflow.models.Model, "load", lambda uri: loaded[uri])
    monkeypatch.setattr(evaluate, "on_test_rows", lambda uri, ds: {"test_accuracy": 0.5})
    rescore = recipe.rescore_on(trained)
    loaded.update({"same": model(trained.feature_set), "none": model(None),
                   "other": model({**trained.feature_set, "define": trained.feature_set["define"][:3]})})
    assert rescore("same") == rescore("none") == {"test_accuracy": 0.5}
    with pytest.raises(ValueError, match="its window features are not this run's"):
        rescore("other")
