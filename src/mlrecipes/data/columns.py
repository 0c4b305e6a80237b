"""Table columns: which ones a run reads, and how each becomes a feature or a target.

Features are float32 numbers (missing: NaN) or strings kept as dictionary codes (`Strings`);
targets are class indices (classification) or float64 values (regression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlrecipes.errors import UserError, require


@dataclass
class Strings:
    """A string column as dictionary codes (-1: missing) and its distinct values: 5 M ticks of a
    few symbols cost 4 bytes a row, not a Python string each."""

    codes: np.ndarray
    values: np.ndarray

    def as_read(self, rows: np.ndarray) -> np.ndarray:
        """The values of `rows` as Python strings (None when missing)."""
        values = np.append(np.asarray([str(v) for v in self.values], dtype=object), None)  # code -1: the last
        return values[self.codes[rows]]

    def fixed_by(self, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(codes over the categories seen in `rows`, those categories sorted); others become -1."""
        present = np.unique(self.codes[rows])
        categories = sorted(str(v) for v in self.values[present[present >= 0]])
        lookup = np.full(len(self.values) + 1, -1, dtype=np.int32)  # the last slot serves code -1
        position = {v: i for i, v in enumerate(categories)}
        for code, value in enumerate(self.values):
            lookup[code] = position.get(str(value), -1)
        return lookup[self.codes], categories


def select_columns(cfg, names: list[str], schema) -> tuple[list[str], list[str]]:
    """(feature columns, columns to read): `columns` (or all) minus `exclude`, target, time, split;
    read besides: target, time, split and report_by columns."""
    import pyarrow as pa

    target = str(cfg.target)
    time_column, split_column = cfg.get("time_column"), cfg.get("split_column")
    report_by = cfg.get("report_by")
    columns = [str(c) for c in (cfg.get("columns") or [])]
    exclude = [str(c) for c in (cfg.get("exclude") or [])]
    for key, values in (("columns", columns), ("exclude", exclude), ("time_column", [time_column]),
                        ("split_column", [split_column]), ("report_by", [report_by])):
        unknown = [str(v) for v in values if v is not None and v not in names]
        require(not unknown, f"data.{key}: unknown column(s) {', '.join(unknown)}; columns: {', '.join(names)}")
    special = {target, time_column, split_column, *exclude}
    features = [c for c in (columns or names) if c not in special]
    require(bool(features), "no feature columns left after data.columns / data.exclude")
    for name in features:
        kind = schema.field(name).type
        if pa.types.is_temporal(kind):
            raise UserError(f"column '{name}' is a {kind} (a raw timestamp is no feature): add it to "
                            f"data.exclude or make it data.time_column")
        if not (numeric(kind) or stringlike(kind)):
            raise UserError(f"column '{name}' has type {kind}: only numbers and strings can be features; "
                            "add it to data.exclude")
    # report_by is read beside the features, not made one: any column can group the test rows.
    read = [*features, target, *(c for c in (time_column, split_column, report_by) if c)]
    return features, list(dict.fromkeys(read))


def numeric(kind) -> bool:
    """An Arrow type a model can take as a number (booleans and decimals included)."""
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


def stringlike(kind) -> bool:
    """A string type, dictionary-encoded or not: a categorical feature."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def projection(read: list[str], features: list[str], schema, exact: list[str] = ()) -> dict:
    """Numeric features cast to float32 during the scan: half the memory of float64 on large tables.
    `exact`: columns read as stored, model features or not: the ones window features are computed
    from, which scoring reads as stored too (a return of float32 prices is not the return of the prices)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return {name: (pc.field(name).cast(pa.float32(), safe=False)
                   if name in features and name not in exact and numeric(schema.field(name).type) else pc.field(name))
            for name in dict.fromkeys(read)}


def feature(column):
    """float32 (missing: NaN) for numbers; `Strings` (dictionary codes) for strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not stringlike(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    encoded = column.unify_dictionaries().combine_chunks() if column.num_chunks else None
    if encoded is None or len(encoded) == 0:
        return Strings(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return Strings(codes, np.asarray(encoded.dictionary.to_pylist(), dtype=object))


def as_read(column, rows: np.ndarray) -> np.ndarray:
    """A column's values at `rows` as Python objects (None when missing), as scoring reads them:
    strings through their dictionary (one object per distinct value, not one per row), anything
    else (an integer id, a date, a timestamp) as Arrow gives it; never cast to float32."""
    import pyarrow as pa

    if stringlike(column.type):
        return feature(column).as_read(rows)
    return np.asarray(column.take(pa.array(rows)).to_pylist(), dtype=object)


def target_values(column, name: str, task: str) -> tuple[np.ndarray, list[str]]:
    """(y, class names): class indices in sorted class order, or float64 values for regression."""
    import pyarrow as pa

    if task == "regression":
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        require(numeric(column.type) and not pa.types.is_boolean(column.type),
                f"target column '{name}' is {column.type}, not a number: task=regression needs a numeric target")
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64), []
    if stringlike(column.type):  # via dictionary codes: no Python string per row
        strings = feature(column)
        y, classes = strings.fixed_by(np.arange(len(strings.codes)))
        classes = np.asarray(classes, dtype=object)
    else:
        classes, y = np.unique(column.to_numpy(zero_copy_only=False), return_inverse=True)
    require(len(classes) >= 2, f"target column '{name}' has fewer than 2 classes ({len(classes)})")
    return y.astype(np.int64), [str(c) for c in classes]

