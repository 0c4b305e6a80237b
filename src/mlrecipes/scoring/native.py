"""A table model's booster called directly on a typed Arrow batch: the scoring fast path.

The table model's pyfunc (mlrecipes.table_model) takes raw rows as a pandas frame: strings as
Python objects, checked against the signature by MLflow, typed again into categoricals, then (for
XGBoost) copied into a DMatrix. Over a million rows that costs several times the booster's own
predict. Here the same typing is done once on the Arrow batch: numbers into a float32 C-contiguous
block, a string feature into the position of its value among the training categories (a category
never seen in training, or a missing value: NaN, the boosters' missing), and the booster is called
on that block (`inplace_predict` / `Booster.predict`), releasing the GIL while it runs on every core.

The model stays the judge: the first batch is also scored through its pyfunc, and a difference in
any probability (a model logged by another version of table_model, a transform, a booster that keeps
its categories otherwise) turns the fast path off for the run, which then scores through the pyfunc.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHECK_ROWS = 2048  # rows of the first batch scored both ways
TOLERANCE = 1e-6  # on probabilities: float32 input both ways, so the same trees give the same leaves


class NativeScorer:
    """The booster of a table model and how its input block is laid out."""

    def __init__(self, framework: str, booster, features: list[str], codes_of: dict[str, pa.Array]):
        self.framework, self.booster, self.features = framework, booster, features
        self.codes_of = codes_of  # string feature -> the values whose positions the booster splits on
        self.checked = False
        self.on = True
        self.seconds = 0.0  # inside the booster's predict (summed over the threads that call it)
        self.side_by_side = 1  # calls running at once (scored_ahead)
        self.threads = 0  # LightGBM's num_threads: 0, OpenMP's default (every core)

    def block(self, batch: pa.RecordBatch) -> np.ndarray:
        """The features as the booster's float32 (rows, features) C-contiguous input."""
        out = np.empty((batch.num_rows, len(self.features)), dtype=np.float32)
        for j, name in enumerate(self.features):
            column = batch.column(name)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if name in self.codes_of:  # position among the training categories; null: not one of them
                column = pc.index_in(column.cast(pa.string()), value_set=self.codes_of[name])
            elif not pa.types.is_floating(column.type):
                column = column.cast(pa.float64())
            out[:, j] = column.to_numpy(zero_copy_only=False)  # a null is NaN: the booster's missing
        return out

    def predict(self, block: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            if self.framework == "xgboost":
                return self.booster.inplace_predict(block, missing=np.nan)
            return self.booster.predict(block, num_threads=self.threads)
        finally:
            self.seconds += time.perf_counter() - started

    def single_threaded(self) -> None:
        """One thread per call: batches are predicted side by side (scored_ahead), one per core, rather
        than one batch over every core, whose threads all wait for the slowest at the end of each call
        while the reader and the writer take turns on the same cores."""
        self.threads = 1
        if self.framework == "xgboost":
            self.booster.set_param({"nthread": 1})


def scored_ahead(chunks, scorer: NativeScorer | None):
    """The chunks, each with its booster output already computing (`chunk.raw`, a future) in a pool
    of one thread per core, at most that many chunks ahead: memory stays a few batches."""
    if scorer is None:
        yield from chunks
        return
    import os
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, len(os.sched_getaffinity(0)))
    scorer.side_by_side = workers
    if workers > 1:
        scorer.single_threaded()
    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="scoring-booster") as pool:
        for chunk in chunks:
            chunk.raw = pool.submit(lambda features: scorer.predict(scorer.block(features)), chunk.features)
            pending.append(chunk)
            if len(pending) > workers:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def native_scorer(model) -> NativeScorer | None:
    """The fast path for a table model's pyfunc (None: anything else, which the pyfunc scores)."""
    unwrap = getattr(model.pyfunc, "unwrap_python_model", None)
    if unwrap is None:
        return None
    try:
        inner = unwrap()
    except Exception:  # noqa: BLE001 - not a python_model pyfunc: nothing to bypass
        return None
    framework = getattr(inner, "framework", None)
    booster = getattr(inner, "booster", None)
    features = list(getattr(inner, "features", None) or [])
    categories = dict(getattr(inner, "categories", None) or {})
    if framework not in ("xgboost", "lightgbm") or booster is None or not features or \
            getattr(inner, "transformer", None) is not None or features != list(model.features or []):
        return None
    codes_of = {name: pa.array([str(c) for c in values], pa.string()) for name, values in categories.items()}
    if framework == "lightgbm":
        # LightGBM maps a pandas categorical's values to the lists it stored at training, in column order.
        stored = getattr(booster, "pandas_categorical", None) or []
        names = [f for f in features if f in categories]
        if len(stored) != len(names):
            return None
        codes_of = {name: pa.array([str(c) for c in values], pa.string())
                    for name, values in zip(names, stored, strict=True)}
    return NativeScorer(framework, booster, features, codes_of)


def agrees(scorer: NativeScorer, ours: np.ndarray, theirs: dict[str, np.ndarray], class_names: list[str],
           task: str) -> bool:
    """Whether the booster's raw output on the first rows matches what the pyfunc returned for them."""
    ours = np.asarray(ours, dtype=np.float64)
    if task == "regression":
        expected = theirs["prediction"].reshape(-1, 1)
        ours = ours.reshape(-1, 1)
    else:
        if ours.ndim == 1:
            ours = np.column_stack([1 - ours, ours])
        expected = np.column_stack([theirs[f"proba_{c}"] for c in class_names])
    same = ours.shape == expected.shape and bool(np.allclose(ours, expected, rtol=TOLERANCE, atol=TOLERANCE,
                                                             equal_nan=True))
    if not same:
        print("[score] note: the booster called directly disagrees with the model's pyfunc on the first rows; "
              "scoring through the pyfunc", file=sys.stderr, flush=True)
    return same
