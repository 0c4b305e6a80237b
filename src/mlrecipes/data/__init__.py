"""Ingest: the readers behind the data catalog (conf/data), each returning a split `Dataset`.

One module per concern:
- `dataset`: the `Dataset` and the row helpers (model input, test rows as scoring reads them);
- `idx`: IDX image sets (parse, download, checksums, load);
- `tables`: lakehouse table sources (Parquet / Delta / CSV, local or S3; filters, time windows);
- `ingest`: a table's rows into a `Dataset` (columns, types, targets); `columns`: per-column rules;
- `sklearn_sets`: scikit-learn's bundled sets; `splits`: random, time and column splits.

`load` picks the reader by `data.kind` from `READERS`, the one place a kind is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlrecipes.data import splits, tables
from mlrecipes.data.dataset import (
    Dataset,
    aligned_empty,
    flat_float,
    positions_by_value,
    raw_rows,
    tabular,
    test_rows,
    unseen_test_rows,
)
from mlrecipes.data.idx import (
    IDX_ROLES,
    MNIST_FILES,
    cache_root,
    class_names,
    download,
    idx_directory,
    idx_files,
    load_idx,
    load_mnist,
    missing_message,
    parse_idx,
    read_idx,
    read_idx_pair,
)
from mlrecipes.data.ingest import TASKS, load_table
from mlrecipes.data.sklearn_sets import breast_cancer
from mlrecipes.errors import require

__all__ = [
    "IDX_ROLES", "KINDS", "MNIST_FILES", "READERS", "TASKS", "Dataset", "Reader", "aligned_empty", "breast_cancer",
    "cache_root", "class_names", "download", "flat_float", "idx_directory", "idx_files", "is_image_set", "load",
    "load_idx", "load_mnist", "load_table", "missing_message", "parse_idx", "positions_by_value", "raw_rows",
    "read_idx", "read_idx_pair", "splits", "tables", "tabular", "test_rows", "unseen_test_rows",
]


@dataclass(frozen=True)
class Reader:
    """How one `data.kind` is read."""

    read: Callable[..., Dataset]  # (data group, task) -> Dataset
    images: bool = False  # an IDX image set: classification only, scored image by image
    windowed: bool = False  # a table with a time column: the time window (conf/window) applies


READERS: dict[str, Reader] = {
    "idx": Reader(load_idx, images=True),
    "mnist": Reader(load_idx, images=True),
    "breast_cancer": Reader(breast_cancer),
    **{kind: Reader(load_table, windowed=True) for kind in tables.KINDS},
}
KINDS = tuple(READERS)


def is_image_set(data_cfg) -> bool:
    """Whether a data group is an IDX image set (pixels, no columns), not a table."""
    reader = READERS.get(str(data_cfg.get("kind")))
    return reader is not None and reader.images


def load(cfg, task: str = "classification") -> Dataset:
    """The data group's source, read by its kind's reader and split."""
    kind = str(cfg.kind)
    require(kind in READERS, f"unknown data.kind '{kind}'; valid: {', '.join(KINDS)}")
    reader = READERS[kind]
    if not reader.windowed:  # the window's parameters are every entry point's, whatever its data
        tables.require_no_window(cfg)
    return reader.read(cfg, task)
