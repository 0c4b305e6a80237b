"""Score with the champion: the `predict` entry point of every project.

    mlflow run projects/lightgbm -e predict -P data=parquet -P output=s3://lake/predictions/ticks \\
        -P keys=[ts,symbol] -P overrides="data.path=s3://lake/ticks data.name=ticks"

One scoring run: compose the project's config (the same `data=` groups, filters and storage
options as training, plus conf/scoring), resolve the model (default `@champion` of
`registry.model_name`), check the input against the model's signature, then read, score and write
in record batches (memory stays bounded), as one MLflow run with rows, speed, the distribution
of the predictions and, when the input still carries the target, live metrics.

A table model knows the categories of its string features from training, and scores a category it
never saw as a missing value. Such rows are counted per column and value (`unseen_*` metrics, the
table `evaluation/unseen_categories.json`, a `warning:` line): a newly listed symbol, or an upstream
change of a column's format (`005930` written as `5930`), which would otherwise silently turn every
row's symbol into "missing". `scoring.max_unseen_fraction` makes too many of them an error instead,
before anything is written.

Writes are safe and idempotent. The *slice* is the rows the filter selects (`data.filters` plus
the interval); `overwrite-slice` replaces exactly what an earlier scoring of the same slice wrote:
- Delta: one transaction, `write_deltalake(mode="overwrite", predicate=<the filter as SQL>)`; a
  run that fails or is killed commits nothing.
- Parquet: files are written to a staging directory beside the output, then moved in and the
  slice's previous files deleted, with signals held off during that swap. Each file's name starts
  with the slice's id (a hash of the filter), so a slice's files are found again and only they are
  replaced. A run that fails or is killed before the swap leaves the output as it was.

Everything a user can get wrong ends with one `error:` line, exit 2 and the run FAILED.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlrecipes import config, tables
from mlrecipes.errors import (
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    UserError,
    exit_now,
    one_line,
    readable_output,
    require,
    see,
)

MODES = ("overwrite-slice", "append", "overwrite")
FORMATS = ("auto", "parquet", "delta")
PROGRESS_EVERY_S = 2.0  # a `rows_scored` point at most this often: progress in the UI, not a flood
UNSEEN_VALUES_KEPT = 1000  # distinct unseen values counted per column; the rest are counted as UNSEEN_OTHER
UNSEEN_OTHER = "(other)"
UNSEEN_SEE = see("scoring-meets-categories-the-model-never-saw")
META = ("model_name", "model_version", "model_run_id", "scoring_run_id", "scored_at")


class Terminated(BaseException):
    """SIGTERM / SIGINT: raised where it is safe, remembered where it is not (the swap)."""


class _Signals:
    """Raises Terminated on SIGTERM/SIGINT, except while `held` (the commit): then only remembered.

    Remembered also when the exception itself gets lost: raised inside a generator that Arrow or
    delta-rs consumes, it comes back as their own error, and `received` tells the two apart."""

    def __init__(self):
        self.received = False
        self.held = False

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        first = not self.received
        self.received = True
        if first and not self.held:
            raise Terminated()


# ---------------------------------------------------------------- the model


@dataclass
class Model:
    name: str
    version: str
    run_id: str
    uri: str
    task: str  # classification | regression
    class_names: list[str]
    features: list[str] | None  # table models: input columns; None: an image model (an array)
    input_types: dict[str, str] = field(default_factory=dict)  # feature -> MLflow type (double, string)
    pyfunc: object = None
    categories: dict[str, list[str]] = field(default_factory=dict)  # string feature -> its training categories


def resolve_model(spec: str, registered: str) -> tuple[str, str]:
    """`@alias` / `<version>` of the config's registered model, or `models:/name/version|@alias`:
    (name, `@alias` or version)."""
    spec = str(spec or "@champion").strip()
    if spec.startswith("models:/"):
        rest = spec.removeprefix("models:/").strip("/")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return name, "@" + alias
        name, sep, version = rest.rpartition("/")
        require(bool(sep and name and version), f"model URI {spec!r}: expected models:/<name>/<version> "
                                                "or models:/<name>@<alias>")
        return name, version
    require("/" not in spec and ":" not in spec,
            f"model {spec!r}: use @<alias>, a version number or models:/<name>/<version|@alias>")
    return registered, spec if spec.isdigit() else "@" + spec.lstrip("@")


def no_alias(client, name: str, alias: str) -> str:
    """Why no version carries the alias, and what to do: train, promote, or score a version."""
    hint = see("scoring-finds-no-champion")
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - the message stays useful without the count
        versions = []
    if not versions:
        return f"no version of {name} has alias {alias}; train it first{hint}"
    latest = max(versions, key=lambda v: int(v.version))
    verdict = latest.tags.get("gate.decision")
    said = f", {verdict}: {latest.tags.get('gate.reason', '')}" if verdict else ""
    return (f"no version of {name} has alias {alias} ({len(versions)} registered; the latest, version "
            f"{latest.version}{said}); promote one with `python -m mlrecipes.registry "
            f"{'' if alias == 'champion' else f'--alias {alias} '}promote {name} {latest.version}` or score "
            f"a version with -P model={latest.version}{hint}")


def load_model(spec: str, registered: str, data_cfg) -> Model:
    import mlflow
    from mlflow.exceptions import MlflowException

    name, which = resolve_model(spec, registered)
    client = mlflow.MlflowClient()
    try:
        if which.startswith("@"):
            version = client.get_model_version_by_alias(name, which[1:])
        else:
            require(which.isdigit(), f"model version {which!r} of {name} is not a number")
            version = client.get_model_version(name, which)
    except MlflowException as exc:
        if which.startswith("@"):
            raise UserError(no_alias(client, name, which[1:])) from None
        raise UserError(f"model version {name}/{which} does not exist ({one_line(exc.message)})") from None
    uri = f"models:/{name}/{version.version}"
    try:
        info = mlflow.models.Model.load(uri)
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise UserError(f"cannot load {uri}: {one_line(str(exc))}") from None
    flavor = info.flavors.get("python_function", {}).get("config") or {}
    inputs = info.signature.inputs if info.signature is not None else None
    if flavor.get("features"):  # a table model (mlrecipes.table_model)
        types = {c.name: c.type.name for c in inputs.inputs} if inputs is not None and inputs.has_input_names() else {}
        categories = {str(k): [str(c) for c in v] for k, v in (flavor.get("categories") or {}).items()}
        return Model(name, str(version.version), version.run_id, uri, str(flavor.get("task", "classification")),
                     [str(c) for c in flavor.get("class_names") or []], [str(f) for f in flavor["features"]],
                     types, loaded, categories)
    # An image model in its native flavor: (n, pixels) float32 in, class probabilities out.
    return Model(name, str(version.version), version.run_id, uri, "classification",
                 [str(c) for c in (data_cfg.get("class_names") or range(10))], None, {}, loaded)


# ---------------------------------------------------------------- the input


@dataclass
class Chunk:
    """One batch: the columns passed through, the model's input, and the target if the input has it."""

    passthrough: pa.RecordBatch
    model_input: object
    target: np.ndarray | None
    groups: list | None = None  # data.report_by's values
    unseen: dict[str, np.ndarray] = field(default_factory=dict)  # string feature -> rows whose category is new


# MLflow column type -> the Arrow type rows are handed over as, and which input types widen to it safely.
_SAFE = {
    "double": (pa.float64(), lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)
               or pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t)),
    "float": (pa.float32(), lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)),
    "long": (pa.int64(), lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t)),
    "integer": (pa.int32(), lambda t: t in (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16())),
    "boolean": (pa.bool_(), lambda t: pa.types.is_boolean(t) or pa.types.is_null(t)),
    "string": (pa.string(), lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)),
}


def check_schema(model: Model, schema: pa.Schema, describe: str) -> dict[str, pa.DataType]:
    """feature -> the type it is read as. Missing column: one line naming it; unsafe cast: one line."""
    out = {}
    for name in model.features:
        require(name in schema.names, f"input column '{name}' is missing from {describe}: "
                                      f"model {model.name} version {model.version} needs it")
        kind = schema.field(name).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        wanted = model.input_types.get(name, "string" if pa.types.is_string(kind) else "double")
        target, safe = _SAFE.get(wanted, (None, lambda t: False))
        require(target is not None and safe(kind),
                f"input column '{name}' is {kind}, the model needs {wanted}: not a safe cast")
        out[name] = target
    return out


def table_chunks(source: tables.TableSource, model: Model, passthrough: list[str], target: str | None,
                 batch_size: int, group: str | None = None):
    types = check_schema(model, source.schema, source.describe())
    read = list(dict.fromkeys([*passthrough, *model.features, *(c for c in (target, group) if c)]))
    import pandas as pd

    known = {name: pa.array(values, pa.string()) for name, values in model.categories.items() if name in types}

    for batch in source.batches(read, batch_size):
        if batch.num_rows == 0:
            continue
        features, unseen = {}, {}
        for name, kind in types.items():
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            column = column.cast(kind)
            if name in known:  # the model's own rule (table_model._categorical): another value is scored as missing
                unseen[name] = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, value_set=known[name]))
                                       ).to_numpy(zero_copy_only=False)
            # Strings as objects (None when missing), numbers as numpy: what the signature was inferred from.
            features[name] = (np.asarray(column.to_pylist(), dtype=object) if kind == pa.string()
                              else column.to_numpy(zero_copy_only=False))
        y = batch.column(target).to_numpy(zero_copy_only=False) if target else None
        yield Chunk(batch.select(passthrough), pd.DataFrame(features), y,
                    batch.column(group).to_pylist() if group else None, unseen)


def image_chunks(data_cfg, split: str, batch_size: int):
    """An IDX set's images as (n, pixels) float32 in [0, 1], with their index and label passed through."""
    from mlrecipes import data

    require(split in ("test", "train"), f"scoring.images must be test or train, got {split!r}")
    roles = ("test_images", "test_labels") if split == "test" else ("train_images", "train_labels")
    images, labels = data._idx_pair(data.idx_directory(data_cfg), roles, data_cfg)
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        passthrough = pa.record_batch({"index": pa.array(np.arange(start, stop, dtype=np.int64)),
                                       "label": pa.array(labels[start:stop])})
        yield Chunk(passthrough, data.flat_float(images[start:stop]), labels[start:stop])


# ---------------------------------------------------------------- the slice (filter + interval)


def sql_predicate(conditions: list[list], schema: pa.Schema) -> str | None:
    """The slice as a Delta (DataFusion SQL) predicate: what `overwrite-slice` replaces."""
    def literal(value, kind):
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            return str(pa.array([str(value)]).cast(kind)[0].as_py())
        return "'" + str(value).replace("'", "''") + "'"

    terms = []
    for column, op, value in conditions:
        kind = tables._value_type(schema.field(column).type)
        op = tables.OPS[str(op)]
        if op in ("in", "not in"):
            values = value if isinstance(value, list | tuple) else [value]
            terms.append(f'"{column}" {op.upper()} ({", ".join(literal(v, kind) for v in values)})')
        else:
            terms.append(f'"{column}" {op} {literal(value, kind)}')
    return " AND ".join(terms) or None


def slice_id(filter_text: str) -> str:
    """Names the files of one slice in a Parquet output: the same filter, the same id."""
    return "s" + hashlib.sha256((filter_text or "<all rows>").encode()).hexdigest()[:12]


# ---------------------------------------------------------------- scoring a chunk


@dataclass
class Stats:
    rows: int = 0
    counts: dict = field(default_factory=dict)  # classification: class -> rows
    sum: float = 0.0
    sum_sq: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    labelled: int = 0  # rows with a target: live metrics
    correct: int = 0
    err_sq: float = 0.0
    err_abs: float = 0.0
    by: dict = field(default_factory=dict)  # data.report_by value -> Stats of its rows
    unseen_rows: int | None = None  # table models: rows with a category the model never saw (any column)
    unseen_values: dict = field(default_factory=dict)  # column -> {value: rows}, the run's stats only

    def metrics(self, task: str) -> dict[str, float]:
        out = {}
        if self.unseen_rows is not None:
            out["unseen_rows"] = self.unseen_rows
            out["unseen_fraction"] = self.unseen_rows / max(self.rows, 1)
            for name, values in sorted(self.unseen_values.items()):
                out[f"unseen.{_metric_name(name)}.rows"] = sum(values.values())
        if task == "classification":
            for name, count in sorted(self.counts.items()):
                out[f"predicted.{_metric_name(name)}.rows"] = count
                out[f"predicted.{_metric_name(name)}.fraction"] = count / max(self.rows, 1)
            if self.labelled:
                out["live_accuracy"] = self.correct / self.labelled
        elif self.rows:
            mean = self.sum / self.rows
            out.update({"prediction_mean": mean, "prediction_min": self.min, "prediction_max": self.max,
                        "prediction_std": math.sqrt(max(self.sum_sq / self.rows - mean * mean, 0.0))})
            if self.labelled:
                out["live_rmse"] = math.sqrt(self.err_sq / self.labelled)
                out["live_mae"] = self.err_abs / self.labelled
        if self.labelled:
            out["live_rows"] = self.labelled
        return out


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in str(name)) or "_"


def predict_frame(model: Model, chunk: Chunk):
    """The model's output as (prediction values, {proba_<class>: values})."""
    out = model.pyfunc.predict(chunk.model_input)
    if model.features is not None:  # table_model: a frame of prediction + proba_<class>
        proba = {c: out[c].to_numpy(dtype=np.float64) for c in out.columns if c.startswith("proba_")}
        return out["prediction"].to_numpy(), proba
    proba = np.asarray(out, dtype=np.float64).reshape(len(chunk.passthrough), -1)
    names = np.asarray(model.class_names, dtype=object)
    return names[proba.argmax(axis=1)], {f"proba_{c}": proba[:, i] for i, c in enumerate(model.class_names)}


def score(model: Model, chunk: Chunk, meta: dict, stats: Stats) -> pa.RecordBatch:
    prediction, proba = predict_frame(model, chunk)
    n = len(chunk.passthrough)
    columns = {name: chunk.passthrough.column(name) for name in chunk.passthrough.schema.names}
    if model.task == "classification":
        columns["prediction"] = pa.array([str(p) for p in prediction], pa.string())
    else:
        columns["prediction"] = pa.array(np.asarray(prediction, dtype=np.float64))
    columns.update({name: pa.array(values, pa.float64()) for name, values in proba.items()})
    unseen = _count_unseen(chunk, stats)
    _account(model, prediction, chunk.target, stats, unseen)
    if chunk.groups is not None:  # the same per value of data.report_by (a symbol)
        from mlrecipes.data import positions_by_value

        for value, rows in positions_by_value(chunk.groups).items():
            _account(model, prediction[rows], None if chunk.target is None else chunk.target[rows],
                     stats.by.setdefault(value, Stats()), None if unseen is None else unseen[rows])
    columns["model_name"] = pa.array([meta["model_name"]] * n, pa.string())
    columns["model_version"] = pa.array([int(meta["model_version"])] * n, pa.int64())
    columns["model_run_id"] = pa.array([meta["model_run_id"]] * n, pa.string())
    columns["scoring_run_id"] = pa.array([meta["scoring_run_id"]] * n, pa.string())
    columns["scored_at"] = pa.array([meta["scored_at"]] * n, pa.timestamp("us", tz="UTC"))
    return pa.record_batch(columns)


def _count_unseen(chunk: Chunk, stats: Stats) -> np.ndarray | None:
    """Adds a batch's unseen categories to stats.unseen_values; returns which rows have any (None: the
    model has no string feature)."""
    if not chunk.unseen:
        return None
    for name, rows in chunk.unseen.items():
        counts = stats.unseen_values.setdefault(name, {})
        if not rows.any():
            continue
        labels, n = np.unique(np.asarray(chunk.model_input[name].to_numpy()[rows], dtype=str), return_counts=True)
        for label, count in zip(labels.tolist(), n.tolist(), strict=True):  # plain str and int, not numpy's
            key = label if label in counts or len(counts) < UNSEEN_VALUES_KEPT else UNSEEN_OTHER
            counts[key] = counts.get(key, 0) + count
    return np.logical_or.reduce(list(chunk.unseen.values()))


def _most_rows_first(values: dict) -> list[tuple[str, int]]:
    return sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))


def unseen_summary(model: Model, stats: Stats, shown: int = 3) -> str | None:
    """One line on the rows with a category the model never saw, the most frequent values first."""
    if not stats.unseen_rows:
        return None
    parts = []
    for name, values in sorted(stats.unseen_values.items()):
        top = _most_rows_first(values)
        if top:
            more = f", {len(top) - shown} more" if len(top) > shown else ""
            parts.append(f"{name}: " + ", ".join(f"{v!r} x{n}" for v, n in top[:shown]) + more)
    return (f"{stats.unseen_rows} of {stats.rows} rows ({stats.unseen_rows / max(stats.rows, 1):.1%}) carry a "
            f"category model {model.name} version {model.version} never saw in training ({'; '.join(parts)})")


def _account(model: Model, prediction, target, stats: Stats, unseen: np.ndarray | None = None) -> None:
    """Adds a batch's predictions (their distribution) and, with a target, their live errors to stats."""
    if unseen is not None:
        stats.unseen_rows = (stats.unseen_rows or 0) + int(unseen.sum())
    if model.task == "classification":
        labels, counts = np.unique(np.asarray(prediction, dtype=str), return_counts=True)
        for label, count in zip(labels, counts, strict=True):
            stats.counts[label] = stats.counts.get(label, 0) + int(count)
    else:
        values = np.asarray(prediction, dtype=np.float64)
        stats.sum += float(values.sum())
        stats.sum_sq += float((values * values).sum())
        stats.min, stats.max = min(stats.min, float(values.min())), max(stats.max, float(values.max()))
    if target is not None:
        _live(model, target, prediction, stats)
    stats.rows += len(prediction)


def _live(model: Model, target: np.ndarray, prediction, stats: Stats) -> None:
    if model.task == "classification":
        if model.features is None:  # image labels are class indices
            truth = np.asarray(model.class_names, dtype=object)[np.asarray(target, dtype=np.int64)]
            known = np.ones(len(truth), dtype=bool)
        else:
            known = np.array([t is not None and t == t for t in target], dtype=bool)
            truth = np.array([str(t) for t in target], dtype=object)
        stats.labelled += int(known.sum())
        stats.correct += int((np.asarray(prediction, dtype=object)[known] == truth[known]).sum())
    else:
        y = np.asarray(target, dtype=np.float64)
        known = ~np.isnan(y)
        err = np.asarray(prediction, dtype=np.float64)[known] - y[known]
        stats.labelled += int(known.sum())
        stats.err_sq += float((err * err).sum())
        stats.err_abs += float(np.abs(err).sum())


# ---------------------------------------------------------------- writing


def output_format(fmt: str, uri: str, input_kind: str, options: dict) -> str:
    require(fmt in FORMATS, f"unknown scoring.format '{fmt}'; valid: {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    filesystem, path = tables.filesystem_for(uri, options)
    from pyarrow import fs

    try:
        info = (filesystem or fs.LocalFileSystem()).get_file_info(f"{path.rstrip('/')}/_delta_log")
    except OSError as exc:
        raise UserError(f"cannot reach output {uri}: {one_line(str(exc))}") from None
    return "delta" if info.type == fs.FileType.Directory or input_kind == "delta" else "parquet"


class ParquetOutput:
    """A Hive-partitioned Parquet directory: stage beside it, then swap the slice's files in."""

    def __init__(self, uri: str, options: dict, run_id: str, slice_name: str):
        from pyarrow import fs

        self.uri = uri
        filesystem, self.path = tables.filesystem_for(uri, options)
        self.fs = filesystem or fs.LocalFileSystem()
        self.path = self.path.rstrip("/")
        parent, _, name = self.path.rpartition("/")
        self.staging = f"{parent}/.{name}.staging-{run_id}"
        self.prefix = f"{slice_name}-"
        self.token = f"{slice_name}-{run_id[:12]}-"

    def check_writable(self):
        try:
            self.fs.create_dir(self.staging, recursive=True)
            probe = f"{self.staging}/.probe"
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise UserError(f"output {self.uri} is not writable: {one_line(str(exc))}") from None

    def write(self, reader: pa.RecordBatchReader, partition_by: list[str]):
        import pyarrow.dataset as pads

        partitioning = (pads.partitioning(pa.schema([reader.schema.field(c) for c in partition_by]), flavor="hive")
                        if partition_by else None)
        pads.write_dataset(reader, self.staging, filesystem=self.fs, format="parquet", partitioning=partitioning,
                           basename_template=self.token + "{i}.parquet", existing_data_behavior="overwrite_or_ignore",
                           max_rows_per_file=1 << 22, max_rows_per_group=1 << 17)

    def commit(self, mode: str):
        from pyarrow import fs

        def files(root):
            info = self.fs.get_file_info(root)
            if info.type != fs.FileType.Directory:
                return []
            return [i.path for i in self.fs.get_file_info(fs.FileSelector(root, recursive=True))
                    if i.type == fs.FileType.File]

        existing = files(self.path)
        old = {"overwrite": existing, "append": [],
               "overwrite-slice": [p for p in existing if p.rpartition("/")[2].startswith(self.prefix)]}[mode]
        for staged in files(self.staging):
            if staged.endswith("/.probe"):
                continue
            target = self.path + staged[len(self.staging):]
            self.fs.create_dir(target.rpartition("/")[0], recursive=True)
            self.fs.move(staged, target)  # local: an atomic rename
        for path in old:
            self.fs.delete_file(path)
        self.abort()

    def abort(self):
        try:
            self.fs.delete_dir(self.staging)
        except OSError:
            pass


class DeltaOutput:
    """A Delta table: the slice is replaced in one transaction (nothing is committed on failure)."""

    def __init__(self, uri: str, options: dict, predicate: str | None):
        self.uri = uri
        self.options = tables.delta_storage_options(uri, options)
        self.predicate = predicate
        self.exists = False

    def check_writable(self):
        from deltalake import DeltaTable

        if "://" not in self.uri:
            try:
                os.makedirs(os.path.dirname(self.uri) or ".", exist_ok=True)
            except OSError as exc:
                raise UserError(f"output {self.uri} is not writable: {one_line(str(exc))}") from None
            require(os.access(os.path.dirname(self.uri) or ".", os.W_OK), f"output {self.uri} is not writable")
        self.exists = DeltaTable.is_deltatable(self.uri, storage_options=self.options)

    def write(self, reader: pa.RecordBatchReader, partition_by: list[str], mode: str):
        from deltalake import write_deltalake

        kwargs = {"storage_options": self.options}
        if not self.exists and partition_by:
            kwargs["partition_by"] = partition_by
        if mode == "overwrite-slice":
            kwargs.update(mode="overwrite", predicate=self.predicate) if self.exists else kwargs.update(mode="append")
        else:
            kwargs["mode"] = mode
        write_deltalake(self.uri, reader, **kwargs)

    def commit(self, mode: str):
        pass  # the write was the transaction

    def abort(self):
        pass


# ---------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> None:
    readable_output()
    exit_now(run(Path.cwd(), sys.argv[1:] if argv is None else argv))


def run(project_dir: Path, argv: list[str]) -> int:
    import mlflow

    signals = _Signals()
    signals.install()
    attached = bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` created the run
    active = None
    outcome = ("FINISHED", 0, None)
    try:
        if attached:
            active = mlflow.start_run()
        # The same words as training (key=value, --overrides "a=1 b=2") plus the scoring group.
        cfg = config.compose(project_dir, [*config.parse_argv(argv), "+scoring=default"], optional=("data.target",))
        if not attached:
            mlflow.set_experiment(str(cfg.scoring.experiment))
            active = mlflow.start_run()
        _score(cfg, active.info.run_id, signals)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        outcome = ("FAILED", EXIT_USER_ERROR, str(exc))
    except (Terminated, KeyboardInterrupt):
        run_id = active.info.run_id if active else "(none)"
        print(f"error: scoring run {run_id} terminated; the output is unchanged", file=sys.stderr, flush=True)
        outcome = ("KILLED", EXIT_TERMINATED, "terminated by a signal")
    except Exception as exc:
        if signals.received:  # a Terminated that Arrow or delta-rs turned into their own error
            print(f"error: scoring run {active.info.run_id} terminated; the output is unchanged",
                  file=sys.stderr, flush=True)
            outcome = ("KILLED", EXIT_TERMINATED, "terminated by a signal")
        else:
            traceback.print_exc()
            outcome = ("FAILED", 1, f"{type(exc).__name__}: {exc}")
    # Closed after the handlers, as a training run is (recipe.run says why: a signal inside a store
    # write leaves the traceback's frames holding SQLite's lock).
    if active is None:
        return outcome[1]
    from mlrecipes import recipe

    return recipe._end(mlflow, active.info.run_id, *outcome)


def _score(cfg, run_id: str, signals: _Signals) -> None:
    import mlflow

    from mlrecipes import tracking
    from mlrecipes.airflow_context import airflow_tags

    s = cfg.scoring
    mode = str(s.mode)
    require(mode in MODES, f"unknown scoring.mode '{mode}'; valid: {', '.join(MODES)}")
    batch_size = int(s.batch_size)
    require(batch_size > 0, f"scoring.batch_size must be > 0, got {batch_size}")
    max_unseen = s.get("max_unseen_fraction")
    require(max_unseen is None or (isinstance(max_unseen, int | float) and not isinstance(max_unseen, bool)
                                   and 0 <= max_unseen <= 1),
            f"scoring.max_unseen_fraction must be null or a number in [0, 1], got {max_unseen!r}")
    # -P output, else where the data group says its predictions go (conf/data/ticks.yaml: `predictions`).
    output = str(s.output or "").strip() or str(cfg.data.get("predictions") or "").strip()
    require(output not in ("", "???"),
            "scoring.output is required (-P output=...): a directory, an s3:// prefix or a Delta table")
    output_uri = tables.resolve_uri(output)
    model = load_model(str(s.model), str(cfg.registry.model_name), cfg.data)
    mlflow.set_tags({
        "mlflow.runName": f"score-{model.name}-v{model.version}", "mlrecipes.project": cfg.project,
        "mlrecipes.entry_point": "predict", "mlrecipes.model.name": model.name,
        "mlrecipes.model.version": model.version, "mlrecipes.model.run_id": model.run_id,
        "mlrecipes.dataset": str(cfg.data.name), **tracking.git_state(), **airflow_tags(),
    })
    mlflow.log_params({"model.uri": model.uri, "model.name": model.name, "model.version": model.version,
                       "model.run_id": model.run_id, "output.uri": output_uri})
    tracking.log_config(cfg)
    options = dict(cfg.data.get("storage_options") or {})

    images = str(cfg.data.kind) in ("idx", "mnist")
    if images:
        require(model.features is None, f"model {model.name} was trained on a table; data={cfg.data.kind} is images")
        require(not s.interval, "scoring.interval is for tables; an IDX image set has no time column")
        chunks = image_chunks(cfg.data, str(s.images), batch_size)
        describe, input_kind, partition_by, conditions, schema = (
            f"IDX {cfg.data.name} {s.images} images", "idx", [], [], None)
        filter_text = f"{cfg.data.name} {s.images} images"
    else:
        require(model.features is not None,
                f"model {model.name} was trained on images; data={cfg.data.kind} is a table")
        source = tables.open_table(cfg.data)
        schema = source.schema
        conditions = [*tables.conditions(cfg.data, schema),  # the data group's filters and window, then the slice
                      *tables.interval_conditions(str(s.interval or ""), s.get("interval_column"), schema,
                                                  key="scoring")]
        source.filter, source.filter_text = tables.filter_expression(conditions, schema)
        describe, input_kind, filter_text = source.describe(), source.kind, source.filter_text
        keys = [str(k) for k in (s["keys"] or [])]
        unknown = [k for k in keys if k not in schema.names]
        require(not unknown,
                f"scoring.keys: unknown column(s) {', '.join(unknown)}; columns: {', '.join(schema.names)}")
        partition_by = list(source.partition_columns)
        passthrough = list(dict.fromkeys([*keys, *partition_by, *(c[0] for c in conditions)]))
        clash = [c for c in passthrough if c == "prediction" or c.startswith("proba_") or c in META]
        require(not clash, f"scoring.keys: {', '.join(clash)} would clash with an output column")
        target = None if _is_missing(cfg.data, "target") else cfg.data.get("target")
        target = str(target) if target and str(target) in schema.names else None
        group = cfg.data.get("report_by")
        require(not group or group in schema.names,
                f"data.report_by: no column {group!r} in {describe}; set data.report_by=null or one of "
                f"{', '.join(schema.names)}")
        chunks = table_chunks(source, model, passthrough, target, batch_size, group)
        mlflow.log_params({"data.source.uri": source.uri, "data.source.kind": source.kind,
                           **({"data.source.version": source.version} if source.version is not None else {}),
                           **({"data.source.filter": filter_text} if filter_text else {})})

    fmt = output_format(str(s.format), output_uri, input_kind, options)
    if fmt == "delta":
        output = DeltaOutput(output_uri, options, sql_predicate(conditions, schema) if conditions else None)
    else:
        output = ParquetOutput(output_uri, options, run_id, slice_id(filter_text))
    output.check_writable()
    mlflow.log_params({"output.format": fmt, "slice": filter_text or "all rows"})
    print(f"[score] {model.uri} on {describe} -> {fmt} {output_uri} ({mode})", flush=True)

    meta = {"model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
            "scoring_run_id": run_id, "scored_at": datetime.now(UTC)}
    stats = Stats()
    started = time.perf_counter()
    progress = {"at": started}

    client = mlflow.MlflowClient()  # explicit run id: the writer's thread has no active run
    refused: list[str] = []  # why the last batch stopped the writer (a native writer may rewrap the error)

    def scored():
        for chunk in chunks:
            if signals.received:  # stop the writer at the next batch: nothing is committed
                raise Terminated()
            batch = score(model, chunk, meta, stats)
            now = time.perf_counter()
            if now - progress["at"] >= PROGRESS_EVERY_S or stats.rows == batch.num_rows:
                client.log_metric(run_id, "rows_scored", stats.rows, step=stats.rows)
                progress["at"] = now
            yield batch
        # Every row is read but nothing is committed yet: raising here stops both writers.
        if max_unseen is not None and (stats.unseen_rows or 0) > max_unseen * stats.rows:
            refused.append(f"{unseen_summary(model, stats)}: more than scoring.max_unseen_fraction "
                           f"{max_unseen:g}; the output is unchanged{UNSEEN_SEE}")
            raise UserError(refused[0])

    batches = scored()
    try:
        first = next(batches, None)
        if first is None:
            raise UserError(f"no rows to score in {describe}: the slice is empty (has its data landed?); "
                            "the output is unchanged")
        stream = _chain(first, batches)
        reader = pa.RecordBatchReader.from_batches(first.schema, stream)
        partition = [c for c in partition_by if c in first.schema.names]
        if fmt == "delta":
            try:
                _in_thread(signals, output.write, reader, partition, mode)
            except Exception as exc:
                if refused:
                    raise UserError(refused[0]) from None
                if signals.received or isinstance(exc, Terminated | UserError):
                    raise
                raise UserError(f"cannot write Delta table {output_uri}: {one_line(str(exc))}") from None
        else:
            try:
                _in_thread(signals, output.write, reader, partition)
            except Exception as exc:
                if refused:
                    raise UserError(refused[0]) from None
                if signals.received or not isinstance(exc, OSError):
                    raise
                raise UserError(f"cannot write {output_uri}: {one_line(str(exc))}") from None
            signals.held = True  # the swap: moves then deletes; a signal now waits for its end
            output.commit(mode)
            signals.held = False
    except BaseException:
        output.abort()
        raise
    if signals.received:
        raise Terminated()
    seconds = time.perf_counter() - started

    from mlrecipes.recipe import peak_rss_mb

    mlflow.log_metrics({"rows_in": stats.rows, "rows_out": stats.rows, "scoring_seconds": seconds,
                        "rows_per_second": stats.rows / max(seconds, 1e-9), "peak_rss_mb": peak_rss_mb(),
                        **stats.metrics(model.task)})
    mlflow.log_metric("rows_scored", stats.rows, step=stats.rows)
    import pandas as pd

    if stats.by:
        group = str(cfg.data.report_by)
        mlflow.log_table(pd.DataFrame([{group: value, "rows": sub.rows, **sub.metrics(model.task)}
                                       for value, sub in sorted(stats.by.items())]), f"evaluation/by_{group}.json")
    unseen = unseen_summary(model, stats)
    if unseen:
        mlflow.log_table(pd.DataFrame([{"column": name, "value": value, "rows": rows}
                                       for name, values in sorted(stats.unseen_values.items())
                                       for value, rows in _most_rows_first(values)]),
                         "evaluation/unseen_categories.json")
        print(f"warning: {unseen}, scored as a missing value{UNSEEN_SEE}", file=sys.stderr, flush=True)
    live = stats.metrics(model.task)
    headline = f", live accuracy {live['live_accuracy']:.4f}" if "live_accuracy" in live else (
        f", live RMSE {live['live_rmse']:.4f}" if "live_rmse" in live else "")
    print(f"[score] {stats.rows} rows in {seconds:.1f}s ({stats.rows / max(seconds, 1e-9):.0f} rows/s){headline}, "
          f"run {run_id}", flush=True)


def _in_thread(signals: _Signals, write, *args) -> None:
    """Run a writer (Arrow's or delta-rs' native loop, which pulls our batches) in a thread.

    Python runs signal handlers in the main thread only, and not while it waits inside native
    code: a writer called from the main thread would notice a SIGTERM only after writing
    everything. Here the main thread waits in short joins, so the handler runs at once."""
    import threading

    failure: list[BaseException] = []

    def target():
        try:
            write(*args)
        except BaseException as exc:  # noqa: BLE001  (handed to the main thread)
            failure.append(exc)

    # Held: a signal is only recorded, so this thread never leaves while the writer still writes;
    # the batch generator sees it and stops the writer at its next batch.
    signals.held = True
    try:
        thread = threading.Thread(target=target, name="scoring-writer", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)  # returns to Python often enough for the handler to run
    finally:
        signals.held = False
    if signals.received:
        raise Terminated()
    if failure:
        raise failure[0]


def _chain(first, rest):
    yield first
    yield from rest


def _is_missing(node, key: str) -> bool:
    from omegaconf import OmegaConf

    return key in node and OmegaConf.is_missing(node, key)


if __name__ == "__main__":
    main()
