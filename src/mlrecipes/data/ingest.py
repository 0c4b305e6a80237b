"""Table ingest: a table's rows in, a split `Dataset` out.

`load_table` reads a lakehouse table (Parquet / Delta / CSV, local or S3, see `tables`): only the
columns the run needs, numbers cast to float32 during the scan. `from_arrow` is the part every
table reader shares (`sklearn_sets` too): rows without a target dropped and counted, features
typed (string categories are the training rows' values; missing values kept), rows split by
`splits.split_table` (random, time or column).
"""

from __future__ import annotations

import numpy as np

from mlrecipes.data import columns, splits, tables
from mlrecipes.data.dataset import Dataset
from mlrecipes.errors import require

TASKS = ("classification", "regression")


def require_target(target: str, names: list[str], describe: str) -> None:
    require(target in names, f"target column '{target}' not in {describe}; columns: {', '.join(names)}")


def load_table(cfg, task: str = "classification") -> Dataset:
    """A lakehouse table (Parquet / Delta / CSV, local or S3) with a target column."""
    require(task in TASKS, f"unknown task '{task}'; valid: {', '.join(TASKS)}")
    source = tables.open_table(cfg)
    describe, names = source.describe(), source.columns
    require_target(str(cfg.target), names, describe)
    features, read = columns.select_columns(cfg, names, source.schema)
    arrow = source.read(columns.projection(read, features, source.schema))
    lineage = {"data.source.uri": source.uri, "data.source.kind": source.kind}
    if source.version is not None:
        lineage["data.source.version"] = source.version
    if source.filter_text:
        lineage["data.source.filter"] = source.filter_text
    return from_arrow(cfg, task, arrow, features, uri=source.uri, describe=describe, lineage=lineage)


def from_arrow(cfg, task: str, arrow, features: list[str], *, uri: str, describe: str,
               lineage: dict) -> Dataset:
    """The Dataset of an Arrow table holding `features` and the columns `select_columns` reads
    besides (target, time, split, report_by)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    target = str(cfg.target)
    rows_read = arrow.num_rows
    require(rows_read > 0, f"no rows in {describe}" + (": the filter leaves none" if " where " in describe else ""))
    if cfg.get("limit"):
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        arrow = arrow.slice(0, int(cfg.limit))

    # Rows without a target cannot train or be scored against: dropped and counted, not an error.
    keep = pc.is_valid(arrow.column(target))
    if pa.types.is_floating(arrow.schema.field(target).type):
        keep = pc.and_(keep, pc.invert(pc.is_nan(arrow.column(target))))
    time_column = cfg.get("time_column")
    if time_column:
        keep = pc.and_(keep, pc.is_valid(arrow.column(time_column)))
    before = arrow.num_rows
    arrow = arrow.filter(keep)
    require(arrow.num_rows > 0, f"target column '{target}' has no values: all {before} rows miss it")
    y, names = columns.target_values(arrow.column(target), target, task)

    train, val, test, split_params = splits.split_table(cfg, arrow, y if task == "classification" else None)
    X = {name: columns.feature(arrow.column(name)) for name in features}
    report_by = cfg.get("report_by")
    test_columns = ({report_by: columns.as_read(arrow.column(report_by), test)}
                    if report_by and report_by not in features else {})
    del arrow
    # String features become categoricals whose categories are the training rows' values: a
    # category first seen in validation, test or scoring is a missing value, not a crash.
    categories, test_strings = {}, {}
    for name, col in X.items():
        if isinstance(col, columns.Strings):
            test_strings[name] = col.as_read(test)
            X[name], categories[name] = col.fixed_by(train)
    params = {"data.rows.read": rows_read, "data.rows.dropped_missing_target": before - len(y),
              **lineage, **split_params}
    parts = [_frame(X, rows, categories) for rows in (train, val, test)]
    del X
    return Dataset(
        name=str(cfg.name), source=uri, X_train=parts[0], y_train=y[train], X_val=parts[1], y_val=y[val],
        X_test=parts[2], y_test=y[test], class_names=names, feature_names=list(features),
        task=task, target=target, categories=categories, params=params, test_strings=test_strings,
        test_columns=test_columns,
    )


def _frame(X: dict, rows: np.ndarray, categories: dict):
    import pandas as pd

    return pd.DataFrame({name: pd.Categorical.from_codes(col[rows], categories=categories[name])
                         if name in categories else col[rows] for name, col in X.items()})
