"""Table ingest: a table's rows in, a split `Dataset` out.

`load_table` reads a lakehouse table (Parquet / Delta / CSV, local or S3, see `tables`): only the
columns the run needs, numbers cast to float32 during the scan. With a `features` group beside the
data group (conf/features, mlrecipes.features), the columns its features read are read too (at
their own precision, whether or not they are model features), the definition is checked against
the table before a row is read, and the features are computed on the whole table, per key in time
order, before rows are dropped or split: validation and test ticks keep their history, and a tick
without a label is still the history of the next. They join the model's feature columns.
`from_arrow` is the part every table reader shares (`sklearn_sets` too): rows without a target
dropped and counted, features typed (string categories are the training rows' values; missing
values kept), rows split by `splits.split_table` (random, time or column), then the fitted
transform (features.transform), fitted on the training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlrecipes import memory
from mlrecipes.data import columns, splits, tables
from mlrecipes.data.dataset import Dataset
from mlrecipes.errors import UserError, require
from mlrecipes.features import transform

TASKS = ("classification", "regression")


@dataclass
class TableDataset(Dataset):
    """A table's Dataset, with what its model must carry to score as it trained: the feature
    definition its columns were computed with (FeatureSet.to_dict; None without features) and the
    transform fitted on its training rows (features.transform), with the columns it maps."""

    feature_set: dict | None = None
    transform: object = None
    transform_columns: list[str] = field(default_factory=list)


def feature_config(cfg):
    """The `features` group composed beside this data group (its sibling in the run's config, as
    conf/window is); None for a data group composed on its own."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return None
    try:
        return OmegaConf.select(cfg, "..features", default=None)
    except OmegaConfBaseException:  # the data group is the root
        return None


def feature_set(cfg):
    """The FeatureSet of the features group beside `cfg` (empty when there is none)."""
    from mlrecipes.features import FeatureSet

    return FeatureSet.from_config(feature_config(cfg), cfg.get("time_column"))


def checked_feature_set(cfg, schema):
    """`feature_set(cfg)`, refused in one line before a row is read when the table cannot serve it or
    a feature reads the label at its own tick (either engine reads the table only after this)."""
    fs = feature_set(cfg)
    if fs:
        fs.validate(schema)
        for leak in fs.reading_now(str(cfg.target))[:1]:
            raise UserError(f"feature {leak!r} reads the target {str(cfg.target)!r} at its own tick: the label "
                            "would leak into the model; a past label is a lag (op: lag, n >= 1)")
    return fs


def require_target(target: str, names: list[str], describe: str) -> None:
    require(target in names, f"target column '{target}' not in {describe}; columns: {', '.join(names)}")


def load_table(cfg, task: str = "classification") -> Dataset:
    """A lakehouse table (Parquet / Delta / CSV, local or S3) with a target column."""
    require(task in TASKS, f"unknown task '{task}'; valid: {', '.join(TASKS)}")
    source = tables.open_table(cfg)
    describe, names = source.describe(), source.columns
    require_target(str(cfg.target), names, describe)
    fs = checked_feature_set(cfg, source.schema)
    features, read_columns = columns.select_columns(cfg, names, source.schema)
    needed = fs.columns_needed()

    def read():  # called by from_arrow, which then holds the table's only reference
        arrow = source.read(columns.projection([*read_columns, *needed], features, source.schema, exact=needed))
        return with_features(arrow, fs) if fs else arrow

    lineage = {"data.source.uri": source.uri, "data.source.kind": source.kind}
    if source.version is not None:
        lineage["data.source.version"] = source.version
    if source.filter_text:
        lineage["data.source.filter"] = source.filter_text
    return from_arrow(cfg, task, read, [*features, *fs.names] if fs else features, uri=source.uri,
                      describe=describe, lineage=lineage, definition=fs.to_dict() if fs else None)


def with_features(arrow, fs):
    """The table with its features appended. Rows without a time have none (null): the split drops
    and counts them as it always has, and no other row's window sees them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = pc.is_valid(arrow.column(fs.order)) if fs.order else None
    if valid is None or arrow.column(fs.order).null_count == 0:
        return fs.compute(arrow)
    rows = pc.indices_nonzero(valid)
    computed = fs.compute(arrow.take(rows))
    # every row's position among the timed rows (null for the others), to put the features back in place
    place = pc.if_else(valid, pc.subtract(pc.cumulative_sum(pc.cast(valid, pa.int64())), 1),
                       pa.scalar(None, pa.int64()))
    for name in fs.names:
        arrow = arrow.append_column(pa.field(name, pa.float64()), computed.column(name).take(place))
    return arrow


def from_arrow(cfg, task: str, read, features: list[str], *, uri: str, describe: str,
               lineage: dict, definition: dict | None = None) -> Dataset:
    """The Dataset of an Arrow table holding `features` and the columns `select_columns` reads
    besides (target, time, split, report_by). `read`: returns that table; called here so that this
    function holds its only reference and frees each column once typed (a caller's reference would
    keep the whole table alive beside its typed copy: twice its size at the peak). `definition`: the
    feature definition the table's computed features came from, carried to the model."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = read()
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
    every_row = pc.all(keep, skip_nulls=False).as_py() is True

    def kept(column):  # column by column: filtering the table would copy all of it at once
        return column if every_row else column.filter(keep)

    split_column, report_by = cfg.get("split_column"), cfg.get("report_by")
    head = pa.table({name: kept(arrow.column(name))
                     for name in dict.fromkeys(c for c in (target, time_column, split_column, report_by) if c)})
    require(head.num_rows > 0, f"target column '{target}' has no values: all {before} rows miss it")
    y, names = columns.target_values(head.column(target), target, task)
    train, val, test, split_params = splits.split_table(cfg, head, y if task == "classification" else None)
    test_columns = ({report_by: columns.as_read(head.column(report_by), test)}
                    if report_by and report_by not in features else {})
    X = {}
    for name in features:  # each column typed, then dropped: the table shrinks as the features grow
        X[name] = columns.feature(kept(arrow.column(name)))
        arrow = arrow.drop_columns([name])
    del arrow, head
    # String features become categoricals whose categories are the training rows' values: a
    # category first seen in validation, test or scoring is a missing value, not a crash.
    categories, test_strings = {}, {}
    for name, col in X.items():
        if isinstance(col, columns.Strings):
            test_strings[name] = col.as_read(test)
            X[name], categories[name] = col.fixed_by(train)
    transformer = transform.build(feature_config(cfg).get("transform")) if feature_config(cfg) else None
    numbers = [name for name in features if name not in categories] if transformer is not None else []
    if transformer is not None:
        # The test rows as read, for whoever scores them as scoring would (data.test_rows): raw values in,
        # the model applies its transform.
        test_columns.update({name: X[name][test].astype(np.float64) for name in numbers})
        transform.fit(transformer, X, numbers, train)
    params = {"data.rows.read": rows_read, "data.rows.dropped_missing_target": before - len(y),
              **lineage, **split_params}
    parts = _frames(X, (train, val, test), categories)
    memory.trim()  # the pages malloc kept from typing and splitting the columns
    return TableDataset(
        name=str(cfg.name), source=uri, X_train=parts[0], y_train=y[train], X_val=parts[1], y_val=y[val],
        X_test=parts[2], y_test=y[test], class_names=names, feature_names=list(features),
        task=task, target=target, categories=categories, params=params, test_strings=test_strings,
        test_columns=test_columns, feature_set=definition, transform=transformer, transform_columns=numbers,
    )


def _frames(X: dict, row_sets: tuple, categories: dict) -> list:
    """One DataFrame per row set, emptying `X` a column at a time (the typed table is held once,
    not beside its parts); each column its own block (copy=False): pandas would otherwise stack
    the float32 columns into one array, a second copy of every part."""
    import pandas as pd

    parts = [{} for _ in row_sets]
    for name in list(X):
        col = X.pop(name)
        for part, rows in zip(parts, row_sets, strict=True):
            part[name] = (pd.Categorical.from_codes(col[rows], categories=categories[name])
                          if name in categories else col[rows])
        del col
    return [pd.DataFrame(part, copy=False) for part in parts]
