"""Scoring one chunk: the model's predictions as an output batch (the passed-through columns,
`prediction`, `proba_<class>` and the run's metadata), accounted in the run's Stats."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlrecipes.scoring.model import Model
from mlrecipes.scoring.native import CHECK_ROWS, agrees
from mlrecipes.scoring.stats import Stats, account, count_unseen, group_positions, take

if TYPE_CHECKING:
    from mlrecipes.scoring.inputs import Chunk

META = ("model_name", "model_version", "model_run_id", "scoring_run_id", "scored_at")


def clashes_with_output(columns: list[str]) -> list[str]:
    """The passed-through columns a scored batch would write twice."""
    return [c for c in columns if c == "prediction" or c.startswith("proba_") or c in META]


def predict_frame(model: Model, chunk: Chunk):
    """The model's output as (prediction values, {proba_<class>: values}, class positions or None)."""
    native = getattr(chunk, "native", None)
    if native is not None and native.on:
        raw = chunk.raw.result() if getattr(chunk, "raw", None) is not None else native.predict(
            native.block(chunk.features))
        if not native.checked:  # the first batch: the booster must say what the model's pyfunc says
            native.checked = True
            rows = slice(0, CHECK_ROWS)
            _, theirs, _ = _pyfunc_output(model, chunk.model_input.iloc[rows], len(raw[rows]))
            if not agrees(native, raw[rows], theirs, model.class_names, model.task):
                native.on = False
                return _pyfunc_output(model, chunk.model_input, len(chunk.passthrough))
        return _booster_output(model, raw)
    return _pyfunc_output(model, chunk.model_input, len(chunk.passthrough))


def _booster_output(model: Model, raw: np.ndarray):
    """Booster output -> as the table model's pyfunc returns it (table_model.output), plus positions."""
    if model.task == "regression":
        return np.asarray(raw, dtype=np.float64).reshape(-1), {}, None
    proba = np.asarray(raw, dtype=np.float64)
    if proba.ndim == 1:  # binary: P(positive class)
        proba = np.column_stack([1 - proba, proba])
    codes = proba.argmax(axis=1)
    return None, {f"proba_{c}": proba[:, i] for i, c in enumerate(model.class_names)}, codes


def _pyfunc_output(model: Model, model_input, n: int):
    out = model.pyfunc.predict(model_input)
    if model.features is not None:  # table_model: a frame of prediction + proba_<class>
        proba = {c: out[c].to_numpy(dtype=np.float64) for c in out.columns if c.startswith("proba_")}
        prediction = out["prediction"].to_numpy()
        if model.task != "classification":
            return prediction, proba, None
        return prediction, proba, _positions(model, prediction)
    proba = np.asarray(out, dtype=np.float64).reshape(n, -1)
    names = np.asarray(model.class_names, dtype=object)
    codes = proba.argmax(axis=1)
    return names[codes], {f"proba_{c}": proba[:, i] for i, c in enumerate(model.class_names)}, codes


def _positions(model: Model, prediction) -> np.ndarray | None:
    """Each predicted label's position among the class names (None: a label outside them)."""
    found = pc.index_in(pa.array(np.asarray(prediction, dtype=object).astype(str)),
                        value_set=pa.array([str(c) for c in model.class_names], pa.string()))
    return None if found.null_count else found.to_numpy(zero_copy_only=False)


def score(model: Model, chunk: Chunk, meta: dict, stats: Stats) -> pa.RecordBatch:
    native = getattr(chunk, "native", None)
    started = time.perf_counter()
    prediction, proba, codes = predict_frame(model, chunk)
    # The model's own predict: the booster's calls on the fast path (their own clock), else the pyfunc call.
    if native is None or not native.on:
        stats.predict_seconds += time.perf_counter() - started
    else:  # summed over the threads calling it side by side
        stats.predict_seconds, stats.predict_side_by_side = native.seconds, native.side_by_side
    n = len(chunk.passthrough)
    columns = {name: chunk.passthrough.column(name) for name in chunk.passthrough.schema.names}
    if model.task == "classification":
        columns["prediction"] = (pa.array([str(c) for c in model.class_names], pa.string()).take(pa.array(codes))
                                 if codes is not None else pa.array([str(p) for p in prediction], pa.string()))
    else:
        columns["prediction"] = pa.array(np.asarray(prediction, dtype=np.float64))
    columns.update({name: pa.array(values, pa.float64()) for name, values in proba.items()})
    unseen = count_unseen(chunk, stats)
    account(model, prediction, chunk.target, stats, unseen, codes, chunk.target_codes)
    if chunk.groups is not None:  # the same per value of data.report_by (a symbol)
        for value, rows in group_positions(chunk.groups).items():
            account(model, None if prediction is None else prediction[rows], take(chunk.target, rows),
                    stats.by.setdefault(value, Stats()), None if unseen is None else unseen[rows],
                    None if codes is None else codes[rows], take(chunk.target_codes, rows))
    columns["model_name"] = pa.repeat(pa.scalar(meta["model_name"], pa.string()), n)
    columns["model_version"] = pa.repeat(pa.scalar(int(meta["model_version"]), pa.int64()), n)
    columns["model_run_id"] = pa.repeat(pa.scalar(meta["model_run_id"], pa.string()), n)
    columns["scoring_run_id"] = pa.repeat(pa.scalar(meta["scoring_run_id"], pa.string()), n)
    columns["scored_at"] = pa.repeat(pa.scalar(meta["scored_at"], pa.timestamp("us", tz="UTC")), n)
    return pa.record_batch(columns)
