"""The `Dataset` every reader returns, and the row helpers that turn its parts into model input.

Images are uint8 arrays; tables are DataFrames of float32 numbers and pandas categoricals. The
helpers give the same rows the way a scorer hands them over (`raw_rows`, `test_rows`) or the way
a tabular model or a network wants them (`flat_float`, `tabular`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlrecipes import memory


class TaskShape:
    """What a data set's `task` and `class_names` (fields of the dataclass using it) decide: shared by
    Dataset and the cluster's ClusterData."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def objective(self) -> str:
        """regression | binary | multiclass: picks the models' objective and metrics."""
        if self.task == "regression":
            return "regression"
        return "binary" if self.num_classes == 2 else "multiclass"


@dataclass
class Dataset(TaskShape):
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
    # Read for one fit only (recipe.steps sets it on the data it loads; a sweep fits its data once
    # per trial and leaves it False): that fit may drop X_train once its model holds the rows.
    single_use: bool = False

    def release_training_rows(self) -> None:
        """Drop X_train once the model holds its own copy of those rows (XGBoost's QuantileDMatrix,
        LightGBM's binned Dataset): the float32 training frame of a 5 M-row table is ~290 MB of the
        run's peak, and nothing after fit reads it. Data read for several fits keeps it."""
        if self.single_use:
            self.X_train = None
            memory.trim()

    def scoring_input(self):
        """The test rows as scoring gives them to a logged model: images as (n, 784) float pixels in
        [0, 1], tables as the raw feature columns (test_rows). What evaluate.on_test_rows re-scores
        a champion on, so evaluate needs nothing else from data."""
        if self.feature_names is None:
            return flat_float(self.X_test)
        return test_rows(self)[list(self.X_test.columns)]


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
