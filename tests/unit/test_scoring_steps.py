"""The scoring step's pure parts: model references, the slice (interval, SQL predicate), the schema check,
the unseen categories, and the scoring config checked before a run exists."""

import signal
from pathlib import Path

import pyarrow as pa
import pytest

from mlrecipes.data import tables
from mlrecipes.errors import UserError
from mlrecipes.scoring import run as scoring_run
from mlrecipes.scoring import stats as scoring_stats
from mlrecipes.scoring.inputs import table_chunks
from mlrecipes.scoring.model import Model, check_schema, resolve_model
from mlrecipes.scoring.predict import score
from mlrecipes.scoring.settings import settings
from mlrecipes.scoring.slices import slice_id, sql_predicate
from mlrecipes.scoring.stats import UNSEEN_OTHER, Stats, unseen_summary

SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("date", pa.string()), ("symbol", pa.string()),
                    ("f0", pa.float64()), ("n", pa.int32()), ("text", pa.string())])


@pytest.mark.parametrize(("spec", "expected"), [
    ("@champion", ("ticks-xgboost", "@champion")), ("champion", ("ticks-xgboost", "@champion")),
    ("7", ("ticks-xgboost", "7")), ("models:/other/3", ("other", "3")),
    ("models:/other@staging", ("other", "@staging")),
])
def test_model_references(spec, expected):
    assert resolve_model(spec, "ticks-xgboost") == expected


def test_a_run_uri_is_refused():
    with pytest.raises(UserError, match="use @<alias>, a version number or models:/"):
        resolve_model("runs:/abc/model", "x")


def test_interval_on_a_date_column_and_a_timestamp_column():
    interval = "2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00"
    assert tables.interval_conditions(interval, "date", SCHEMA) == [["date", "ge", "2026-01-03"],
                                                                    ["date", "lt", "2026-01-04"]]
    assert tables.interval_conditions("2026-01-03T09:00:00+09:00/2026-01-03T12:00:00+09:00", "ts", SCHEMA) == [
        ["ts", "ge", "2026-01-03T00:00:00"], ["ts", "lt", "2026-01-03T03:00:00"]]  # in UTC
    assert tables.interval_conditions("", None, SCHEMA) == []


@pytest.mark.parametrize(("interval", "column", "message"), [
    ("2026-01-03/2026-01-04", None, "needs window.column"),
    ("2026-01-03/2026-01-04", "when", "unknown column 'when'"),
    ("yesterday/today", "date", "expected START/END in ISO 8601"),
    ("2026-01-04/2026-01-03", "date", "START must be before END"),
    ("2026-01-03T12:00:00/2026-01-04T00:00:00", "date", "must be midnights"),
])
def test_bad_intervals(interval, column, message):
    with pytest.raises(UserError, match=message):
        tables.interval_conditions(interval, column, SCHEMA)


def test_the_slice_as_a_delta_predicate():
    conditions = [["date", "ge", "2026-01-03"], ["symbol", "in", ["005930", "O'Neil"]], ["n", "lt", 5]]
    assert sql_predicate(conditions, SCHEMA) == (
        "\"date\" >= '2026-01-03' AND \"symbol\" IN ('005930', 'O''Neil') AND \"n\" < 5")
    assert sql_predicate([], SCHEMA) is None


def test_slice_ids_follow_the_filter():
    assert slice_id("date >= '2026-01-03'") == slice_id("date >= '2026-01-03'")
    assert slice_id("date >= '2026-01-03'") != slice_id("date >= '2026-01-04'")


def _model(**types):
    return Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], list(types), types)


def test_schema_check_widens_safely_and_names_what_is_wrong():
    assert check_schema(_model(n="double", symbol="string"), SCHEMA, "t") == {
        "n": pa.float64(), "symbol": pa.string()}
    with pytest.raises(UserError, match="input column 'f9' is missing from t: model m version 1 needs it"):
        check_schema(_model(f9="double"), SCHEMA, "t")
    with pytest.raises(UserError, match="input column 'text' is string, the model needs double: not a safe cast"):
        check_schema(_model(text="double"), SCHEMA, "t")
    with pytest.raises(UserError, match="input column 'f0' is double, the model needs string"):
        check_schema(_model(f0="string"), SCHEMA, "t")


class _Source:
    """A TableSource stand-in: one in-memory table, read in batches."""

    def __init__(self, table: pa.Table):
        self.table, self.schema = table, table.schema

    def describe(self) -> str:
        return "memory"

    def batches(self, columns, batch_size):
        yield from self.table.select(columns).to_batches(max_chunksize=batch_size)


class _Pyfunc:
    def predict(self, frame):
        import pandas as pd

        return pd.DataFrame({"prediction": ["a"] * len(frame), "proba_a": 0.9, "proba_b": 0.1})


def _scored(model, table, batch_size=2):
    stats = Stats()
    meta = {"model_name": "m", "model_version": "1", "model_run_id": "r", "scoring_run_id": "s", "scored_at": None}
    for chunk in table_chunks(_Source(table), model, ["symbol"], None, batch_size, group="symbol"):
        score(model, chunk, meta, stats)
    return stats


def test_categories_the_model_never_saw_are_counted_per_column_value_and_group():
    model = Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], ["symbol", "venue", "f0"],
                          {"symbol": "string", "venue": "string", "f0": "double"}, _Pyfunc(),
                          {"symbol": ["005930", "000660"], "venue": ["KRX"]})
    table = pa.table({"symbol": ["005930", "5930", "5930", "207940", "000660", None],
                      "venue": ["KRX", "KRX", "NXT", "KRX", "KRX", None], "f0": [1.0] * 6})
    stats = _scored(model, table)
    # '5930' (twice), '207940' and venue 'NXT' (on a row already counted): 3 rows; a missing value is no category
    assert stats.rows == 6 and stats.unseen_rows == 3
    assert stats.unseen_values == {"symbol": {"5930": 2, "207940": 1}, "venue": {"NXT": 1}}
    metrics = stats.metrics("classification")
    assert metrics["unseen_rows"] == 3 and metrics["unseen_fraction"] == 0.5
    assert metrics["unseen.symbol.rows"] == 3 and metrics["unseen.venue.rows"] == 1
    assert {k: v.unseen_rows for k, v in stats.by.items()} == {"005930": 0, "5930": 2, "207940": 1, "000660": 0,
                                                                "(missing)": 0}
    assert unseen_summary(model, stats) == (
        "3 of 6 rows (50.0%) carry a category model m version 1 never saw in training "
        "(symbol: '5930' x2, '207940' x1; venue: 'NXT' x1)")


def test_no_unseen_metrics_without_string_features_and_the_distinct_values_are_capped(monkeypatch):
    numeric = Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], ["f0"], {"f0": "double"},
                            _Pyfunc())
    stats = _scored(numeric, pa.table({"symbol": ["x", "y"], "f0": [1.0, 2.0]}))
    assert stats.unseen_rows is None and "unseen_rows" not in stats.metrics("classification")
    assert unseen_summary(numeric, stats) is None

    monkeypatch.setattr(scoring_stats, "UNSEEN_VALUES_KEPT", 2)
    model = Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], ["symbol"],
                          {"symbol": "string"}, _Pyfunc(), {"symbol": ["005930"]})
    stats = _scored(model, pa.table({"symbol": ["n1", "n2", "n3", "n4", "n1", "005930"]}))
    assert stats.unseen_rows == 5
    assert stats.unseen_values == {"symbol": {"n1": 2, "n2": 1, UNSEEN_OTHER: 2}}



def test_the_stats_of_parts_added_up_are_the_stats_of_the_whole():
    # compute.score: each partition's Stats, scored on a worker, added up by the driver (Stats.add).
    model = Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], ["symbol", "f0"],
                  {"symbol": "string", "f0": "double"}, _Pyfunc(), {"symbol": ["005930"]})
    table = pa.table({"symbol": ["005930", "5930", "5930", "207940", "005930", None], "f0": [1.0] * 6})
    whole, added = _scored(model, table), Stats()
    for start in (0, 2, 5):
        added.add(_scored(model, table.slice(start, {0: 2, 2: 3, 5: 1}[start])))

    def counts(stats):  # the time inside predict is a clock's, not a count
        return {k: v for k, v in stats.metrics("classification").items() if not k.startswith("predict_s")}

    assert added.rows == whole.rows == 6 and counts(added) == counts(whole)
    assert added.unseen_values == whole.unseen_values == {"symbol": {"5930": 2, "207940": 1}}
    assert {k: counts(v) for k, v in added.by.items()} == {k: counts(v) for k, v in whole.by.items()}

# ---------------------------------------------------------------- the config, checked before a run exists

PROJECT = Path(__file__).resolve().parents[2] / "projects" / "lightgbm"


def _settings(*overrides):
    from mlrecipes import config

    return settings(config.compose(PROJECT, [*overrides, "+scoring=default"], optional=("data.target",)))


def test_settings_of_a_good_config():
    checked = _settings("scoring.output=out", "scoring.mode=append", "scoring.batch_size=10")
    assert (checked.mode, checked.format, checked.batch_size, checked.max_unseen, checked.images) == (
        "append", "auto", 10, None, True)
    assert checked.output_uri == str(Path("out").resolve())


@pytest.mark.parametrize(("overrides", "message"), [
    (["scoring.mode=upsert"], "unknown scoring.mode 'upsert'; valid: overwrite-slice, append, overwrite"),
    (["scoring.format=csv"], "unknown scoring.format 'csv'; valid: auto, parquet, delta"),
    (["scoring.batch_size=0"], "scoring.batch_size must be > 0, got 0"),
    (["scoring.max_unseen_fraction=2"], r"scoring.max_unseen_fraction must be null or a number in \[0, 1\], got 2"),
    (["scoring.output="], "scoring.output is required"),
    (["scoring.model=runs:/abc/model"], "use @<alias>, a version number or models:/"),
    (["scoring.images=validation"], "scoring.images must be test or train, got 'validation'"),
    (["window.interval=2026-01-03/2026-01-04"], "window.interval is for tables"),
])
def test_settings_refuse_a_bad_value(overrides, message):
    with pytest.raises(UserError, match=message):
        _settings("scoring.output=out", *overrides)


@pytest.fixture
def handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_bad_mode_is_one_line_exit_2_and_creates_no_run(tmp_path, monkeypatch, capsys, handlers):
    import mlflow

    def no_run(*args, **kwargs):
        raise AssertionError("a run (or its experiment) was created for a config that cannot score")

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)  # not under `mlflow run`: the run would be ours
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(mlflow, "start_run", no_run)
    monkeypatch.setattr(mlflow, "set_experiment", no_run)
    assert scoring_run.run(PROJECT, ["scoring.mode=upsert", f"scoring.output={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: unknown scoring.mode 'upsert'; valid: overwrite-slice, append, overwrite"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()
