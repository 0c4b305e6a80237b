"""What a scoring run learns about its predictions: their distribution, live metrics where the
input still carries the target, and the categories the model never saw in training.

A table model knows the categories of its string features from training, and scores a category it
never saw as a missing value. Such rows are counted per column and value (`unseen_*` metrics, the
table `evaluation/unseen_categories.json`, a `warning:` line): a newly listed symbol, or an upstream
change of a column's format (`005930` written as `5930`), which would otherwise silently turn every
row's symbol into "missing". `scoring.max_unseen_fraction` makes too many of them an error instead,
before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlrecipes.errors import see

if TYPE_CHECKING:
    from mlrecipes.scoring.inputs import Chunk
    from mlrecipes.scoring.model import Model

UNSEEN_VALUES_KEPT = 1000  # distinct unseen values counted per column; the rest are counted as UNSEEN_OTHER
UNSEEN_OTHER = "(other)"
UNSEEN_SEE = see("scoring-meets-categories-the-model-never-saw")


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
    predict_seconds: float = 0.0  # inside the model's predict (the booster's own time), the run's stats only
    predict_side_by_side: int = 1  # the booster's calls running at once (their seconds are summed)

    def metrics(self, task: str) -> dict[str, float]:
        out = {"predict_seconds": self.predict_seconds, "predict_side_by_side": self.predict_side_by_side} \
            if self.predict_seconds else {}
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

    def add(self, other: Stats) -> None:
        """Adds another part's stats to these: a cluster's run is the sum of its partitions' (compute.score)."""
        self.rows += other.rows
        for label, count in other.counts.items():
            self.counts[label] = self.counts.get(label, 0) + count
        self.sum, self.sum_sq = self.sum + other.sum, self.sum_sq + other.sum_sq
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.labelled, self.correct = self.labelled + other.labelled, self.correct + other.correct
        self.err_sq, self.err_abs = self.err_sq + other.err_sq, self.err_abs + other.err_abs
        for value, sub in other.by.items():
            self.by.setdefault(value, Stats()).add(sub)
        if other.unseen_rows is not None:
            self.unseen_rows = (self.unseen_rows or 0) + other.unseen_rows
        for name, values in other.unseen_values.items():
            counts = self.unseen_values.setdefault(name, {})
            for label, count in sorted(values.items()):
                _count_unseen_value(counts, label, count)
        self.predict_seconds += other.predict_seconds
        self.predict_side_by_side = max(self.predict_side_by_side, other.predict_side_by_side)

def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in str(name)) or "_"


def account(model: Model, prediction, target, stats: Stats, unseen: np.ndarray | None = None,
            codes: np.ndarray | None = None, target_codes: np.ndarray | None = None) -> None:
    """Adds a batch's predictions (their distribution) and, with a target, their live errors to stats.
    `codes`: a classifier's predictions as class positions (then `prediction` may be None);
    `target_codes`: the target's (-1: no target, -2: a value that is no class)."""
    if unseen is not None:
        stats.unseen_rows = (stats.unseen_rows or 0) + int(unseen.sum())
    if model.task == "classification" and codes is not None:
        counts = np.bincount(codes, minlength=len(model.class_names))
        for label, count in zip(model.class_names, counts.tolist(), strict=True):
            if count:
                stats.counts[str(label)] = stats.counts.get(str(label), 0) + count
        if target_codes is not None:
            stats.labelled += int((target_codes != -1).sum())
            stats.correct += int((target_codes == codes).sum())
        elif target is not None:
            _live(model, target, np.asarray(model.class_names, dtype=object)[codes], stats)
        stats.rows += len(codes)
        return
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


def take(values, rows: np.ndarray):
    """values[rows] for a numpy array, an Arrow array or None."""
    if values is None:
        return None
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.take(pa.array(rows))
    return values[rows]


def group_positions(groups) -> dict[str, np.ndarray]:
    """The row positions of each value of data.report_by, in value order, a missing one as '(missing)'
    (data.positions_by_value's rule): one dictionary encoding of the batch, however many values."""
    if not isinstance(groups, pa.Array | pa.ChunkedArray):
        from mlrecipes.data import positions_by_value

        return positions_by_value(groups)
    encoded = pc.dictionary_encode(groups.cast(pa.string()) if not pa.types.is_string(groups.type) else groups)
    names = [str(v) for v in encoded.dictionary.to_pylist()]
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    indices = np.where(np.isnan(indices), len(names), indices).astype(np.int64) if encoded.null_count else \
        indices.astype(np.int64)
    names.append("(missing)")
    order = np.argsort(indices, kind="stable")
    bounds = np.cumsum(np.bincount(indices, minlength=len(names)))
    out = {}
    for i, name in enumerate(names):
        rows = order[bounds[i - 1] if i else 0:bounds[i]]
        if len(rows):
            out[name] = np.concatenate([out[name], rows]) if name in out else rows
    return {name: np.sort(out[name]) for name in sorted(out)}


def _live(model: Model, target: np.ndarray, prediction, stats: Stats) -> None:
    if model.task == "classification":
        if model.features is None:  # image labels are class indices
            truth = np.asarray(model.class_names, dtype=object)[np.asarray(target, dtype=np.int64)]
            known = np.ones(len(truth), dtype=bool)
        else:
            if isinstance(target, pa.Array | pa.ChunkedArray):
                target = np.asarray(target.to_pylist(), dtype=object)
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


# ---------------------------------------------------------------- categories the model never saw


def count_unseen(chunk: Chunk, stats: Stats) -> np.ndarray | None:
    """Adds a batch's unseen categories to stats.unseen_values; returns which rows have any (None: the
    model has no string feature)."""
    if not chunk.unseen:
        return None
    for name, rows in chunk.unseen.items():
        counts = stats.unseen_values.setdefault(name, {})
        if not rows.any():
            continue
        found = pc.value_counts(chunk.values(name, rows))  # first seen first, as strings
        pairs = sorted(zip(found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True))
        for label, count in pairs:  # plain str and int, in value order
            _count_unseen_value(counts, label, count)
    return np.logical_or.reduce(list(chunk.unseen.values()))



def _count_unseen_value(counts: dict, label: str, count: int) -> None:
    """Counts a value, or UNSEEN_OTHER once UNSEEN_VALUES_KEPT distinct values are counted."""
    key = label if label in counts or len(counts) < UNSEEN_VALUES_KEPT else UNSEEN_OTHER
    counts[key] = counts.get(key, 0) + count

def most_rows_first(values: dict) -> list[tuple[str, int]]:
    return sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))


def unseen_summary(model: Model, stats: Stats, shown: int = 3) -> str | None:
    """One line on the rows with a category the model never saw, the most frequent values first."""
    if not stats.unseen_rows:
        return None
    parts = []
    for name, values in sorted(stats.unseen_values.items()):
        top = most_rows_first(values)
        if top:
            more = f", {len(top) - shown} more" if len(top) > shown else ""
            parts.append(f"{name}: " + ", ".join(f"{v!r} x{n}" for v, n in top[:shown]) + more)
    return (f"{stats.unseen_rows} of {stats.rows} rows ({stats.unseen_rows / max(stats.rows, 1):.1%}) carry a "
            f"category model {model.name} version {model.version} never saw in training ({'; '.join(parts)})")
