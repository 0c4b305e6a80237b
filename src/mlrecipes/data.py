"""Ingest: the readers behind the data catalog (conf/data), each returning a split `Dataset`.

- IDX image sets (MNIST, Fashion-MNIST, ...): checksummed files in <cache root>/<name>/, the
  official test set, a stratified validation split with a fixed seed shared by every framework.
- Tables (Parquet / Delta / CSV, local or S3, see `mlrecipes.tables`): selected columns, typed
  features (numbers, categoricals), missing values kept, rows without a target dropped and
  counted, split by `mlrecipes.splits` (random, time or column).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlrecipes import splits, tables
from mlrecipes.errors import UserError, require, see

# sha256 of the uncompressed IDX bytes of the official files.
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Item counts of the official files: a file with exactly this many items must match its checksum.
MNIST_FULL_COUNT = {"train": 60000, "t10k": 10000}
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Train / validation / test rows. Images: uint8 arrays. Tables: DataFrames (float32 numbers,
    pandas categoricals whose categories are the training rows' values; missing values kept)."""

    name: str
    source: str
    X_train: Any
    y_train: np.ndarray
    X_val: Any
    y_val: np.ndarray
    X_test: Any
    y_test: np.ndarray
    class_names: list[str]  # empty for regression
    feature_names: list[str] | None = None
    task: str = "classification"
    target: str | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # lineage: rows read / dropped, source, version, filter, split
    # The test rows' string features as read (X_test has a value the training rows lack as missing):
    # what another model is scored on (test_rows).
    test_strings: dict[str, np.ndarray] = field(default_factory=dict)
    # The test rows of data.report_by when it is no feature (a partition such as date, an excluded
    # id), as read: what the per-value table groups by (test_rows).
    test_columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def objective(self) -> str:
        """regression | binary | multiclass: picks the models' objective and metrics."""
        if self.task == "regression":
            return "regression"
        return "binary" if self.num_classes == 2 else "multiclass"


def cache_root(configured: str | None = None) -> Path:
    """The data cache root: config value, else $MLRECIPES_DATA_DIR, else ~/.cache/mlrecipes."""
    root = configured or os.environ.get("MLRECIPES_DATA_DIR") or "~/.cache/mlrecipes"
    return Path(root).expanduser().resolve()


# --------------------------------------------------------------------------- IDX / MNIST


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (raw or gzip); any truncation or header damage is a UserError."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # gzip raises these on truncated or non-gzip input
        raise UserError(f"corrupt IDX file {path}: {exc}") from None
    return parse_idx(raw, path)


def parse_idx(raw: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"corrupt IDX file {path}: bad magic number")
    ndim = raw[3]
    header = 4 + 4 * ndim
    require(len(raw) >= header, f"corrupt IDX file {path}: header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(
            f"corrupt IDX file {path}: {len(raw) - header} data bytes, header says {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def download(stem: str, directory: Path, mirrors: list[str], timeout: float, sha256: str) -> Path:
    """Fetch `<stem>.gz` from the first mirror whose uncompressed bytes match `sha256`.

    The file is written to a temporary name in `directory` and renamed into place, so a
    reader never sees a half-written file under the real name.
    """
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                payload = resp.read()
            digest = hashlib.sha256(gzip.decompress(payload)).hexdigest()
        except (urllib.error.URLError, OSError, EOFError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if digest != sha256:
            errors.append(f"{url}: checksum mismatch (sha256 {digest[:12]}…)")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            target = directory / f"{stem}.gz"
            os.replace(tmp, target)  # atomic on one filesystem
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
    raise UserError("; ".join(errors) or "no mirrors configured")


def idx_files(cfg) -> dict[str, tuple[str, str | None, int | None]]:
    """role -> (file stem, sha256 of the uncompressed bytes, item count of the full file).

    A data group lists its own `files`; without them, MNIST's. The checksum is verified when a
    file has the full item count (a committed subset, such as the tests' fixture, cannot match).
    """
    files = cfg.get("files")
    if not files:
        return {role: (stem, MNIST_FILES[stem], MNIST_FULL_COUNT[stem.split("-")[0]])
                for role, stem in zip(IDX_ROLES, MNIST_FILES, strict=True)}
    missing = [role for role in IDX_ROLES if role not in files]
    require(not missing, f"data.files needs {', '.join(IDX_ROLES)}; missing: {', '.join(missing)}")
    return {role: (str(files[role].name), files[role].get("sha256"), files[role].get("items"))
            for role in IDX_ROLES}


def _idx_pair(directory: Path, roles: tuple[str, str], cfg) -> tuple[np.ndarray, np.ndarray]:
    spec = idx_files(cfg)
    arrays = []
    for role in roles:
        stem, sha256, items = spec[role]
        path = _find(directory, stem)
        if path is None and cfg.download:
            try:
                require(bool(sha256), f"no sha256 for {stem} in data.files: cannot verify a download")
                path = download(stem, directory, list(cfg.mirrors), cfg.timeout, sha256)
            except UserError as exc:
                raise UserError(missing_message(directory, cfg, str(exc))) from None
        if path is None:
            raise UserError(missing_message(directory, cfg, "download disabled"))
        array = read_idx(path)
        if sha256 and (items is None or len(array) == int(items)):
            # The header is part of the checksum: rebuild it from the array.
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            digest = hashlib.sha256(header + array.tobytes()).hexdigest()
            require(digest == sha256, f"checksum mismatch for {path}: re-download it")
        arrays.append(array)
    images, labels = arrays
    require(
        len(images) == len(labels) and images.ndim == 3 and labels.ndim == 1,
        f"corrupt IDX files in {directory}: {images.shape} images vs {labels.shape} labels",
    )
    classes = len(class_names(cfg))
    require(int(labels.max(initial=0)) < classes,
            f"corrupt labels in {directory}: label {int(labels.max())} but {classes} classes")
    return images, labels.astype(np.int64)


def _mnist_split(directory: Path, prefix: str, cfg) -> tuple[np.ndarray, np.ndarray]:
    return _idx_pair(directory, ("train_images", "train_labels") if prefix == "train" else
                     ("test_images", "test_labels"), cfg)


def class_names(cfg) -> list[str]:
    return [str(c) for c in (cfg.get("class_names") or range(10))]


def missing_message(directory: Path, cfg, why: str) -> str:
    names = ", ".join(f"{stem}.gz" for stem, _, _ in idx_files(cfg).values())
    label = "MNIST" if str(cfg.get("name", "mnist")) == "mnist" else str(cfg.name)
    hint = see("mnist-not-found") if why == "download disabled" else see("the-machine-is-offline")
    return (
        f"{label} not found in {directory} and could not be downloaded ({why}); "
        f"put {names} there or set MLRECIPES_DATA_DIR to a directory whose {directory.name}/ holds them"
        + hint
    )


def idx_directory(cfg) -> Path:
    return cache_root(cfg.get("dir")) / str(cfg.get("name", "mnist"))


def load_idx(cfg) -> Dataset:
    """An IDX image set (MNIST, Fashion-MNIST, KMNIST, ...) from <cache root>/<name>/."""
    directory = idx_directory(cfg)
    X, y = _idx_pair(directory, ("train_images", "train_labels"), cfg)
    X_test, y_test = _idx_pair(directory, ("test_images", "test_labels"), cfg)
    if cfg.get("limit"):
        require(int(cfg.limit) > 0, f"data.limit must be > 0, got {cfg.limit}")
        X, y = X[: int(cfg.limit)], y[: int(cfg.limit)]
    train, val = splits.holdout(np.arange(len(y)), y, splits.fraction(cfg.val_fraction, "val_fraction"), cfg.seed)
    return Dataset(
        name=str(cfg.get("name", "mnist")),
        source=str(directory),
        X_train=X[train],
        y_train=y[train],
        X_val=X[val],
        y_val=y[val],
        X_test=X_test,
        y_test=y_test,
        class_names=class_names(cfg),
    )


load_mnist = load_idx  # MNIST is the default IDX set


# --------------------------------------------------------------------------- tables

TASKS = ("classification", "regression")


def load_table(cfg, task: str = "classification") -> Dataset:
    """A lakehouse table (Parquet / Delta / CSV, local or S3) or sklearn's breast_cancer, plus a target."""
    import pyarrow as pa
    import pyarrow.compute as pc

    require(task in TASKS, f"unknown task '{task}'; valid: {', '.join(TASKS)}")
    target = str(cfg.target)
    if cfg.kind == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        arrow = pa.Table.from_pandas(load_breast_cancer(as_frame=True).frame, preserve_index=False)
        uri = describe = "sklearn.datasets.load_breast_cancer"
        require(target in arrow.column_names, f"target column '{target}' not in {describe}; "
                                              f"columns: {', '.join(arrow.column_names)}")
        features, read = _select_columns(cfg, arrow.column_names, arrow.schema)
        arrow = arrow.select(read)
        lineage = {}
    else:
        source = tables.open_table(cfg)
        uri, describe, names = source.uri, source.describe(), source.columns
        require(target in names, f"target column '{target}' not in {describe}; columns: {', '.join(names)}")
        features, read = _select_columns(cfg, names, source.schema)
        arrow = source.read(_projection(read, features, source.schema))
        lineage = {"data.source.uri": uri, "data.source.kind": source.kind}
        if source.version is not None:
            lineage["data.source.version"] = source.version
        if source.filter_text:
            lineage["data.source.filter"] = source.filter_text
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
    y, names = _target(arrow.column(target), target, task)

    train, val, test, split_params = _split_rows(cfg, arrow, y if task == "classification" else None)
    X = {name: _feature(arrow.column(name)) for name in features}
    report_by = cfg.get("report_by")
    test_columns = ({report_by: _as_read(arrow.column(report_by), test)}
                    if report_by and report_by not in features else {})
    del arrow
    # String features become categoricals whose categories are the training rows' values: a
    # category first seen in validation, test or scoring is a missing value, not a crash.
    categories, test_strings = {}, {}
    for name, col in X.items():
        if isinstance(col, _Strings):
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


@dataclass
class _Strings:
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


def _select_columns(cfg, names: list[str], schema) -> tuple[list[str], list[str]]:
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
        if not (_numeric(kind) or _stringlike(kind)):
            raise UserError(f"column '{name}' has type {kind}: only numbers and strings can be features; "
                            "add it to data.exclude")
    # report_by is read beside the features, not made one: any column can group the test rows.
    read = [*features, target, *(c for c in (time_column, split_column, report_by) if c)]
    return features, list(dict.fromkeys(read))


def _numeric(kind) -> bool:
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


def _stringlike(kind) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _projection(read: list[str], features: list[str], schema) -> dict:
    """Numeric features cast to float32 during the scan: half the memory of float64 on large tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return {name: (pc.field(name).cast(pa.float32(), safe=False)
                   if name in features and _numeric(schema.field(name).type) else pc.field(name))
            for name in read}


def _feature(column):
    """float32 (missing: NaN) for numbers; `_Strings` (dictionary codes) for strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _stringlike(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    encoded = column.unify_dictionaries().combine_chunks() if column.num_chunks else None
    if encoded is None or len(encoded) == 0:
        return _Strings(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return _Strings(codes, np.asarray(encoded.dictionary.to_pylist(), dtype=object))


def _as_read(column, rows: np.ndarray) -> np.ndarray:
    """A column's values at `rows` as Python objects (None when missing), as scoring reads them:
    strings through their dictionary (one object per distinct value, not one per row), anything
    else (an integer id, a date, a timestamp) as Arrow gives it; never cast to float32."""
    import pyarrow as pa

    if _stringlike(column.type):
        return _feature(column).as_read(rows)
    return np.asarray(column.take(pa.array(rows)).to_pylist(), dtype=object)


def _target(column, name: str, task: str) -> tuple[np.ndarray, list[str]]:
    import pyarrow as pa

    if task == "regression":
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        require(_numeric(column.type) and not pa.types.is_boolean(column.type),
                f"target column '{name}' is {column.type}, not a number: task=regression needs a numeric target")
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64), []
    if _stringlike(column.type):  # via dictionary codes: no Python string per row
        strings = _feature(column)
        y, classes = strings.fixed_by(np.arange(len(strings.codes)))
        classes = np.asarray(classes, dtype=object)
    else:
        classes, y = np.unique(column.to_numpy(zero_copy_only=False), return_inverse=True)
    require(len(classes) >= 2, f"target column '{name}' has fewer than 2 classes ({len(classes)})")
    return y.astype(np.int64), [str(c) for c in classes]


def _split_rows(cfg, arrow, y: np.ndarray | None):
    method = str(cfg.get("split") or "random")
    require(method in splits.METHODS, f"unknown data.split '{method}'; valid: {', '.join(splits.METHODS)}")
    time_column = cfg.get("time_column")
    times = arrow.column(time_column).to_numpy(zero_copy_only=False) if time_column else None
    if method == "time":
        require(bool(time_column), "data.split=time needs data.time_column (the column that orders the rows)")
        train, val, test = splits.time_split(times, cfg.test_fraction, cfg.val_fraction, time_column)
    elif method == "column":
        column = cfg.get("split_column")
        require(bool(column), "data.split=column needs data.split_column (a column naming each row's split)")
        train, val, test = splits.column_split(arrow.column(column).to_numpy(zero_copy_only=False), column)
    else:
        train, val, test = splits.random_split(arrow.num_rows, y, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    params = {"data.split.method": method}
    if times is not None:  # also for random splits: shows how much they look ahead
        params.update(splits.time_ranges(times, {"train": train, "validation": val, "test": test}))
    return train, val, test, params


KINDS = ("idx", "mnist", "breast_cancer", *tables.KINDS)


def load(cfg, task: str = "classification") -> Dataset:
    require(cfg.kind in KINDS, f"unknown data.kind '{cfg.kind}'; valid: {', '.join(KINDS)}")
    if cfg.kind in ("idx", "mnist", "breast_cancer"):  # the MLproject passes the window keys to every data group
        window = [k for k in ("interval", "interval_column", "lookback") if cfg.get(k)]
        require(not window, f"data.{window[0] if window else ''} is for tables (parquet, delta, csv); "
                            f"data={cfg.name} has no time column")
    if cfg.kind in ("idx", "mnist"):
        require(task == "classification", f"task={task}: image sets are classification only")
        return load_idx(cfg)
    return load_table(cfg, task)


def flat_float(X: np.ndarray) -> np.ndarray:
    """MNIST images as (n, 784) float32 in [0, 1]; tabular features unchanged."""
    if X.dtype == np.uint8:  # one pass, one new array (astype, then / 255: two of 188 MB for MNIST)
        out = aligned_empty((len(X), int(np.prod(X.shape[1:]))), np.float32)
        return np.divide(X.reshape(len(X), -1), np.float32(255), out=out, dtype=np.float32)
    return X.astype(np.float32, copy=False)


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.empty on a 64-byte boundary, which TensorFlow needs to use an array's memory as it is
    (DLPack) instead of copying it; NumPy's own large arrays start 16 bytes past a page."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buffer = np.empty(nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def tabular(ds: Dataset, X):
    """Input for tabular models: (n, 784) float pixels for images; the DataFrame itself for tables."""
    return flat_float(X) if ds.feature_names is None else X


def test_rows(ds: Dataset):
    """The test rows as a reader hands them over (raw_rows), string features as read: how scoring,
    and the gate's re-scoring of a champion, give them to a model; plus a data.report_by column that
    is no feature, as read."""
    rows = raw_rows(ds.X_test)
    for name, values in {**ds.test_strings, **ds.test_columns}.items():
        rows[name] = values
    return rows


def unseen_test_rows(ds: Dataset) -> np.ndarray | None:
    """Which test rows carry a string-feature value the training rows lack (the model sees it as a
    missing value, as scoring does: scoring.unseen_summary); None when there is no string feature."""
    if not ds.test_strings:
        return None
    import pandas as pd

    return np.logical_or.reduce([pd.notna(raw) & ds.X_test[name].isna().to_numpy()
                                 for name, raw in ds.test_strings.items()])


def positions_by_value(values) -> dict[str, np.ndarray]:
    """The row positions of each value of one column (data.report_by), in value order: values as
    strings, a missing one as '(missing)'. One pass over the rows, however many values there are."""
    import pandas as pd

    labels = pd.Series(np.asarray(values, dtype=object))
    labels = labels.where(labels.notna(), "(missing)").astype(str)
    return dict(sorted(labels.groupby(labels, sort=False).indices.items()))


def raw_rows(X):
    """Table rows as a reader hands them over: strings (None when missing) and float64 numbers."""
    import pandas as pd

    return pd.DataFrame({
        name: (X[name].astype(object).where(X[name].notna(), None) if isinstance(X[name].dtype, pd.CategoricalDtype)
               else X[name].astype(np.float64))
        for name in X.columns
    })
