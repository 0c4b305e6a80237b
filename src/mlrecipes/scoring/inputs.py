"""What a scoring run reads: the slice of a table (the data group's filters plus the window) or
an IDX set's images, as a stream of chunks in the model's input form. A model trained with window
features gets them computed from its own definition over the slice and its lookback (windowed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlrecipes.data import flat_float, idx_directory, read_idx_pair, tables
from mlrecipes.errors import require
from mlrecipes.scoring.model import Model, check_schema
from mlrecipes.scoring.native import NativeScorer, native_scorer, scored_ahead
from mlrecipes.scoring.predict import clashes_with_output
from mlrecipes.scoring.settings import Settings
from mlrecipes.scoring.windowed import FeatureReport, featured_table


class Chunk:
    """One batch: the columns passed through, the model's input, and the target if the input has it.

    A table's chunk keeps its typed Arrow features: the booster's block (native) is built from them,
    and the pyfunc's pandas frame (`model_input`) only when something asks for it."""

    def __init__(self, passthrough: pa.RecordBatch, model_input=None, target=None, groups=None,
                 unseen: dict[str, np.ndarray] | None = None, features: pa.RecordBatch | None = None,
                 types: dict | None = None, native: NativeScorer | None = None, target_codes=None):
        self.passthrough = passthrough
        self._input = model_input
        self.target = target  # numpy, or an Arrow array (a table's column: converted only where needed)
        self.groups = groups  # data.report_by's values (an Arrow array for tables)
        self.unseen = unseen or {}  # string feature -> rows whose category is new
        self.features, self.types, self.native = features, types, native
        self.target_codes = target_codes  # classification: the target's class position; -1 missing, -2 other
        self.raw = None  # the booster's output, computing (native.scored_ahead), else computed when scored

    @property
    def model_input(self):
        if self._input is None and self.features is not None:
            self._input = pandas_input(self.features, self.types)
        return self._input

    def values(self, name: str, rows: np.ndarray) -> pa.Array:
        """A feature's values on the given rows (the unseen categories' counts)."""
        if self.features is not None:
            return self.features.column(name).filter(pa.array(rows))
        return pa.array(np.asarray(self.model_input[name].to_numpy()[rows], dtype=str))


@dataclass
class Input:
    """The opened input: its chunks (read lazily) and what the run records about it."""

    chunks: Iterator[Chunk]
    describe: str  # for messages: "parquet /lake/ticks", "IDX mnist test images"
    kind: str  # idx | parquet | delta | csv
    filter_text: str  # the slice, as text; names a Parquet output's files (slices.slice_id)
    partition_by: list[str]  # the input's partition columns: the output is partitioned alike
    conditions: list[list]  # the slice as [column, op, value]: a Delta output's predicate
    schema: pa.Schema | None
    params: dict[str, str] = field(default_factory=dict)  # logged as the run's data.source.* params
    features: FeatureReport | None = None  # a model with window features: what computing them found


def open_input(cfg, model: Model, settings: Settings) -> Input:
    s = cfg.scoring
    if settings.images:
        require(model.features is None, f"model {model.name} was trained on a table; data={cfg.data.kind} is images")
        return Input(image_chunks(cfg.data, str(s.images), settings.batch_size),
                     f"IDX {cfg.data.name} {s.images} images", "idx", f"{cfg.data.name} {s.images} images",
                     [], [], None)
    sliced = table_slice(cfg, model)
    source = sliced.source
    if model.feature_set:  # the history read with the data group's filters, not the window: training's rows
        report = FeatureReport()
        chunks = featured_chunks(source, model, sliced.passthrough, sliced.target, settings, sliced.group,
                                 tables.as_conditions(cfg.data.get("filters")), report)
        return sliced.input(chunks, report)
    return sliced.input(table_chunks(source, model, sliced.passthrough, sliced.target, settings.batch_size,
                                     sliced.group))


@dataclass
class TableSlice:
    """A table's slice opened and checked against the scoring config: what to read and pass through.
    The same for one process and for a cluster (compute.score), which reads it on the workers."""

    source: tables.TableSource
    conditions: list[list]  # the slice as [column, op, value]
    passthrough: list[str]  # keys, partition and filter columns: written beside the predictions
    target: str | None  # the target column, when the input still carries it: live metrics
    group: str | None  # data.report_by

    def input(self, chunks, features: FeatureReport | None = None) -> Input:
        source = self.source
        params = {"data.source.uri": source.uri, "data.source.kind": source.kind,
                  **({"data.source.version": source.version} if source.version is not None else {}),
                  **({"data.source.filter": source.filter_text} if source.filter_text else {})}
        return Input(chunks, source.describe(), source.kind, source.filter_text, list(source.partition_columns),
                     self.conditions, source.schema, params, features)


def table_slice(cfg, model: Model) -> TableSlice:
    require(model.features is not None, f"model {model.name} was trained on images; data={cfg.data.kind} is a table")
    s = cfg.scoring
    source = tables.open_table(cfg.data)
    schema = source.schema
    conditions = tables.conditions(cfg.data, schema)  # the slice: the data group's filters and the window
    source.filter, source.filter_text = tables.filter_expression(conditions, schema)
    describe = source.describe()
    keys = [str(k) for k in (s["keys"] or [])]
    unknown = [k for k in keys if k not in schema.names]
    require(not unknown, f"scoring.keys: unknown column(s) {', '.join(unknown)}; columns: {', '.join(schema.names)}")
    passthrough = list(dict.fromkeys([*keys, *source.partition_columns, *(c[0] for c in conditions)]))
    clash = clashes_with_output(passthrough)
    require(not clash, f"scoring.keys: {', '.join(clash)} would clash with an output column")
    target = None if _is_missing(cfg.data, "target") else cfg.data.get("target")
    target = str(target) if target and str(target) in schema.names else None
    group = cfg.data.get("report_by")
    require(not group or group in schema.names,
            f"data.report_by: no column {group!r} in {describe}; set data.report_by=null or one of "
            f"{', '.join(schema.names)}")
    return TableSlice(source, conditions, passthrough, target, group)


def table_chunks(source: tables.TableSource, model: Model, passthrough: list[str], target: str | None,
                 batch_size: int, group: str | None = None):
    types = check_schema(model, source.schema, source.describe())
    read = list(dict.fromkeys([*passthrough, *model.features, *(c for c in (target, group) if c)]))
    known = {name: pa.array(values, pa.string()) for name, values in model.categories.items() if name in types}
    native, classes = native_scorer(model), _classes(model)
    yield from scored_ahead((chunk_of(batch, types, known, passthrough, target, group, native, classes)
                             for batch in source.batches(read, batch_size) if batch.num_rows), native)


def featured_chunks(source: tables.TableSource, model: Model, passthrough: list[str], target: str | None,
                    settings: Settings, group: str | None, filters: list, report: FeatureReport):
    """The slice with the model's window features (windowed), in chunks of settings.batch_size."""
    check_schema(model, source.schema, source.describe())  # before a row is read
    read = list(dict.fromkeys([*passthrough, *model.raw_features, *(c for c in (target, group) if c)]))
    table = featured_table(source, read, model, filters, settings.max_short, report)
    if table is not None:
        yield from computed_chunks(table, model, passthrough, target, settings.batch_size, group)


def computed_chunks(table: pa.Table, model: Model, passthrough: list[str], target: str | None, batch_size: int,
                    group: str | None = None):
    """Chunks of rows holding the model's raw features and its computed window features (float64):
    the slice as windowed computes it in one process, or one partition of it on a cluster (compute.score)."""
    types = check_schema(model, table.schema, "the slice")
    types.update({name: pa.float64() for name in model.features if name not in types})  # computed: float64
    known = {name: pa.array(values, pa.string()) for name, values in model.categories.items() if name in types}
    native, classes = native_scorer(model), _classes(model)
    yield from scored_ahead((chunk_of(batch, types, known, passthrough, target, group, native, classes)
                             for batch in table.to_batches(max_chunksize=batch_size) if batch.num_rows), native)


def chunk_of(batch: pa.RecordBatch, types: dict, known: dict, passthrough: list[str], target: str | None,
             group: str | None, native: NativeScorer | None = None, classes: pa.Array | None = None) -> Chunk:
    columns, unseen = {}, {}
    for name, kind in types.items():
        column = batch.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        column = column.cast(kind)
        if name in known:  # the model's own rule (table_model): another value is scored as missing
            unseen[name] = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=known[name]))
                                   ).to_numpy(zero_copy_only=False)
        columns[name] = column
    y = batch.column(target) if target else None
    codes = None
    if y is not None and classes is not None and (pa.types.is_string(y.type) or pa.types.is_integer(y.type)):
        # The class position of each row's target: vectorised live accuracy (-1: no target, -2: not a class).
        found = pc.index_in(y.cast(pa.string()), value_set=classes).to_numpy(zero_copy_only=False)
        codes = np.where(np.isnan(found), -2, np.nan_to_num(found)).astype(np.int64)
        codes[~pc.is_valid(y).to_numpy(zero_copy_only=False)] = -1
    if y is not None and not pa.types.is_string(y.type) and classes is None:
        y = y.to_numpy(zero_copy_only=False)  # regression: numbers
    features = pa.record_batch(columns) if columns else pa.record_batch({}, schema=pa.schema([]))
    return Chunk(batch.select(passthrough), None, y, batch.column(group) if group else None, unseen,
                 features, types, native, codes)


def pandas_input(features: pa.RecordBatch, types: dict):
    """The pyfunc's input: strings as objects (None when missing), numbers as numpy, what the
    signature was inferred from."""
    import pandas as pd

    return pd.DataFrame({name: (np.asarray(column.to_pylist(), dtype=object) if types[name] == pa.string()
                                else column.to_numpy(zero_copy_only=False))
                         for name, column in zip(features.schema.names, features.columns, strict=True)})


def image_chunks(data_cfg, split: str, batch_size: int):
    """An IDX set's images as (n, pixels) float32 in [0, 1], with their index and label passed through."""
    require(split in ("test", "train"), f"scoring.images must be test or train, got {split!r}")
    roles = ("test_images", "test_labels") if split == "test" else ("train_images", "train_labels")
    images, labels = read_idx_pair(idx_directory(data_cfg), roles, data_cfg)
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        passthrough = pa.record_batch({"index": pa.array(np.arange(start, stop, dtype=np.int64)),
                                       "label": pa.array(labels[start:stop])})
        yield Chunk(passthrough, flat_float(images[start:stop]), labels[start:stop])


def _classes(model: Model) -> pa.Array | None:
    """A classifier's class names as Arrow strings (None: a regressor)."""
    return pa.array([str(c) for c in model.class_names], pa.string()) if model.task == "classification" else None


def _is_missing(node, key: str) -> bool:
    from omegaconf import OmegaConf

    return key in node and OmegaConf.is_missing(node, key)
