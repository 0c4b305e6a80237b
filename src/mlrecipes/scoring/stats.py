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


def account(model: Model, prediction, target, stats: Stats, unseen: np.ndarray | None = None) -> None:
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
        labels, n = np.unique(np.asarray(chunk.model_input[name].to_numpy()[rows], dtype=str), return_counts=True)
        for label, count in zip(labels.tolist(), n.tolist(), strict=True):  # plain str and int, not numpy's
            key = label if label in counts or len(counts) < UNSEEN_VALUES_KEPT else UNSEEN_OTHER
            counts[key] = counts.get(key, 0) + count
    return np.logical_or.reduce(list(chunk.unseen.values()))


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
