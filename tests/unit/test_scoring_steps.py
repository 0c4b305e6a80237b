"""The scoring step's pure parts: model references, the slice (interval, SQL predicate), the schema check."""

import pyarrow as pa
import pytest

from mlrecipes import scoring, tables
from mlrecipes.errors import UserError

SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("date", pa.string()), ("symbol", pa.string()),
                    ("f0", pa.float64()), ("n", pa.int32()), ("text", pa.string())])


@pytest.mark.parametrize(("spec", "expected"), [
    ("@champion", ("ticks-xgboost", "@champion")), ("champion", ("ticks-xgboost", "@champion")),
    ("7", ("ticks-xgboost", "7")), ("models:/other/3", ("other", "3")),
    ("models:/other@staging", ("other", "@staging")),
])
def test_model_references(spec, expected):
    assert scoring.resolve_model(spec, "ticks-xgboost") == expected


def test_a_run_uri_is_refused():
    with pytest.raises(UserError, match="use @<alias>, a version number or models:/"):
        scoring.resolve_model("runs:/abc/model", "x")


def test_interval_on_a_date_column_and_a_timestamp_column():
    interval = "2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00"
    assert tables.interval_conditions(interval, "date", SCHEMA) == [["date", "ge", "2026-01-03"],
                                                                    ["date", "lt", "2026-01-04"]]
    assert tables.interval_conditions("2026-01-03T09:00:00+09:00/2026-01-03T12:00:00+09:00", "ts", SCHEMA) == [
        ["ts", "ge", "2026-01-03T00:00:00"], ["ts", "lt", "2026-01-03T03:00:00"]]  # in UTC
    assert tables.interval_conditions("", None, SCHEMA) == []


@pytest.mark.parametrize(("interval", "column", "message"), [
    ("2026-01-03/2026-01-04", None, "needs scoring.interval_column"),
    ("2026-01-03/2026-01-04", "when", "unknown column 'when'"),
    ("yesterday/today", "date", "expected START/END in ISO 8601"),
    ("2026-01-04/2026-01-03", "date", "START must be before END"),
    ("2026-01-03T12:00:00/2026-01-04T00:00:00", "date", "must be midnights"),
])
def test_bad_intervals(interval, column, message):
    with pytest.raises(UserError, match=message):
        tables.interval_conditions(interval, column, SCHEMA, key="scoring")


def test_the_slice_as_a_delta_predicate():
    conditions = [["date", "ge", "2026-01-03"], ["symbol", "in", ["005930", "O'Neil"]], ["n", "lt", 5]]
    assert scoring.sql_predicate(conditions, SCHEMA) == (
        "\"date\" >= '2026-01-03' AND \"symbol\" IN ('005930', 'O''Neil') AND \"n\" < 5")
    assert scoring.sql_predicate([], SCHEMA) is None


def test_slice_ids_follow_the_filter():
    assert scoring.slice_id("date >= '2026-01-03'") == scoring.slice_id("date >= '2026-01-03'")
    assert scoring.slice_id("date >= '2026-01-03'") != scoring.slice_id("date >= '2026-01-04'")


def _model(**types):
    return scoring.Model("m", "1", "r", "models:/m/1", "classification", ["a", "b"], list(types), types)


def test_schema_check_widens_safely_and_names_what_is_wrong():
    assert scoring.check_schema(_model(n="double", symbol="string"), SCHEMA, "t") == {
        "n": pa.float64(), "symbol": pa.string()}
    with pytest.raises(UserError, match="input column 'f9' is missing from t: model m version 1 needs it"):
        scoring.check_schema(_model(f9="double"), SCHEMA, "t")
    with pytest.raises(UserError, match="input column 'text' is string, the model needs double: not a safe cast"):
        scoring.check_schema(_model(text="double"), SCHEMA, "t")
    with pytest.raises(UserError, match="input column 'f0' is double, the model needs string"):
        scoring.check_schema(_model(f0="string"), SCHEMA, "t")
