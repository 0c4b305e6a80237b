"""A table's rows on the cluster, typed and split: data/ingest.py's guarantees without the driver
holding a row.

Read on the workers (`read`), persisted once (every later step counts or filters the same
partitions in worker memory), rows without a target or a time dropped and counted, `data.limit`
kept as the first N rows in partition order, split (`splits`), string features typed by the
training rows (`categories`). The params are the single-process run's names: data.rows.read,
data.rows.dropped_missing_target, data.source.*, data.split.*.

Window features (the `features` group beside the data group) are checked against the table before a
row is read and computed on the workers right after the read, before any row is dropped, limited or
split, by the single-process code per key (`compute.features`): validation and test rows keep their
history, and the definition travels to the model (`feature_set`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlrecipes.compute import categories, features, read, splits
from mlrecipes.data.dataset import TaskShape
from mlrecipes.data.ingest import TASKS, checked_feature_set, feature_config
from mlrecipes.errors import require

TARGET = "__mlrecipes_y"  # the target as class index (classification) or float64 (regression)


@dataclass
class ClusterData(TaskShape):
    """Train / validation / test as lazy frames over persisted partitions: features, TARGET and the
    columns read besides (time, report_by). `feature_set`: the window features' definition
    (FeatureSet.to_dict; None without), which the model carries as a single-process run's does."""

    name: str
    task: str
    target: str
    features: list[str]
    class_names: list[str]
    categories: dict[str, list[str]]
    train: object
    validation: object
    test: object
    params: dict = field(default_factory=dict)
    table: read.Table | None = None
    feature_set: dict | None = None

    def parts(self) -> dict[str, object]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _head(frame, keep: dict[int, int], partition_info=None):
    return frame.iloc[: keep.get((partition_info or {}).get("number", 0), 0)]


def first_rows(df, limit: int):
    """The first `limit` rows in partition order (data.limit), partitions past them emptied."""
    lengths = df.map_partitions(len).compute().tolist()
    keep, left = {}, limit
    for number, length in enumerate(lengths):
        keep[number] = min(length, left)
        left -= keep[number]
    return df.map_partitions(_head, keep, meta=df._meta)


def _kept(frame, target: str, time_column: str | None):
    keep = frame[target].notna()
    if time_column:
        keep &= frame[time_column].notna()
    return frame[keep]


def load(cfg, task: str, client, partition_by: str = "file") -> ClusterData:
    """The data group's table on the cluster behind `client`, ready to train on."""
    import dask

    require(task in TASKS, f"unknown task '{task}'; valid: {', '.join(TASKS)}")
    require(not (feature_config(cfg) or {}).get("transform"),
            "features.transform (a transformer fitted on the training rows) is fitted in one process for now: "
            "run it with compute=local")
    table = read.open_for_cluster(cfg, partition_by)
    fs = checked_feature_set(cfg, table.source.schema)
    table = features.reading(table, fs)
    describe, target = table.source.describe(), str(cfg.target)
    time_column = cfg.get("time_column") or None
    df = client.persist(table.frame())
    if fs:  # on every row read: a row without a label is still the history of the next
        df = client.persist(features.with_features(client, df, fs))
    rows_read = int(df.shape[0].compute())
    require(rows_read > 0, f"no rows in {describe}" + (": the filter leaves none" if " where " in describe else ""))
    if cfg.get("limit"):  # as data/ingest.py: rows read counts the rows before the limit
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        df = client.persist(first_rows(df, int(cfg.limit)))
    kept = df.map_partitions(_kept, target, time_column, meta=df._meta)
    before, rows_kept = (int(v) for v in dask.compute(df.shape[0], kept.shape[0]))
    require(rows_kept > 0, f"target column '{target}' has no values: all {before} rows miss it")

    if task == "regression":
        categories.require_numeric_target(df._meta[target].dtype, target)
        classes = None
    else:
        classes = categories.classes_of(kept[target], target)
    meta = categories.target_codes(kept._meta, target, TARGET, classes)
    coded = client.persist(kept.map_partitions(categories.target_codes, target, TARGET, classes, meta=meta))
    del df, kept  # the persisted read is released once the coded frame holds the rows
    labelled, split_params = splits.label(cfg, coded)
    labelled = client.persist(labelled)
    parts = [labelled[labelled[splits.PART] == i].drop(columns=[splits.PART]) for i in range(3)]
    names = [*table.features, *fs.names]
    strings = categories.string_features(labelled._meta, names)
    fixed = categories.fixed_by(parts[0], strings)
    parts = [categories.typed(p, fixed) for p in parts]
    params = {"data.rows.read": rows_read, "data.rows.dropped_missing_target": before - rows_kept,
              **table.lineage, **split_params}
    return ClusterData(name=str(cfg.name), task=task, target=target, features=names,
                       class_names=[str(c) for c in classes] if classes else [], categories=fixed,
                       train=parts[0], validation=parts[1], test=parts[2], params=params, table=table,
                       feature_set=fs.to_dict() if fs else None)
