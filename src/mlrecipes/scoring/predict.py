"""Scoring one chunk: the model's predictions as an output batch (the passed-through columns,
`prediction`, `proba_<class>` and the run's metadata), accounted in the run's Stats."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mlrecipes.data import positions_by_value
from mlrecipes.scoring.model import Model
from mlrecipes.scoring.stats import Stats, account, count_unseen

if TYPE_CHECKING:
    from mlrecipes.scoring.inputs import Chunk

META = ("model_name", "model_version", "model_run_id", "scoring_run_id", "scored_at")


def clashes_with_output(columns: list[str]) -> list[str]:
    """The passed-through columns a scored batch would write twice."""
    return [c for c in columns if c == "prediction" or c.startswith("proba_") or c in META]


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
    unseen = count_unseen(chunk, stats)
    account(model, prediction, chunk.target, stats, unseen)
    if chunk.groups is not None:  # the same per value of data.report_by (a symbol)
        for value, rows in positions_by_value(chunk.groups).items():
            account(model, prediction[rows], None if chunk.target is None else chunk.target[rows],
                    stats.by.setdefault(value, Stats()), None if unseen is None else unseen[rows])
    columns["model_name"] = pa.array([meta["model_name"]] * n, pa.string())
    columns["model_version"] = pa.array([int(meta["model_version"])] * n, pa.int64())
    columns["model_run_id"] = pa.array([meta["model_run_id"]] * n, pa.string())
    columns["scoring_run_id"] = pa.array([meta["scoring_run_id"]] * n, pa.string())
    columns["scored_at"] = pa.array([meta["scored_at"]] * n, pa.timestamp("us", tz="UTC"))
    return pa.record_batch(columns)
