"""What every peer shares: the local IDX files instead of each example's download, and the curve.

Each peer is the published example as published; only its MNIST loading is replaced by `load()`,
and a callback snapshots the model (a copy of its weights, or the round) against cumulative training
seconds; after training each snapshot is evaluated on the test set, one `CURVE {json}` line per point,
for bench/run.py to read. The same as our projects' eval.test_every: evaluating in the middle of
training slowed the Keras epochs after it.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load():
    """(x_train, y_train), (x_test, y_test) as uint8 arrays, as keras.datasets.mnist.load_data gives them."""
    root = Path(os.environ["MLRECIPES_DATA_DIR"]) / "mnist"
    return ((_idx(root / "train-images-idx3-ubyte.gz"), _idx(root / "train-labels-idx1-ubyte.gz")),
            (_idx(root / "t10k-images-idx3-ubyte.gz"), _idx(root / "t10k-labels-idx1-ubyte.gz")))


class Curve:
    """Training clock that stops while a snapshot is taken; the evaluations come after training."""

    def __init__(self):
        self.started, self.paused, self.points = time.perf_counter(), 0.0, []

    def snapshot(self, step: int, state=None) -> None:
        """state(): a copy of what accuracy_at needs (default: the step, for boosted rounds)."""
        t0 = time.perf_counter()
        self.points.append((step, round(t0 - self.started - self.paused, 3), state() if state else step))
        self.paused += time.perf_counter() - t0

    def finish(self, accuracy_at) -> None:
        """accuracy_at(state) -> test accuracy of the model as it was then."""
        for step, seconds, state in self.points:
            point = {"step": step, "seconds": seconds, "test_accuracy": float(accuracy_at(state))}
            print("CURVE " + json.dumps(point), flush=True)

    def finish_keras(self, model, x_test, y_test) -> None:
        """finish for a Keras peer: each snapshot's weights in, model.evaluate, then the final weights back."""
        final = model.get_weights()

        def accuracy_at(weights):
            model.set_weights(weights)
            return model.evaluate(x_test, y_test, verbose=0)[1]

        self.finish(accuracy_at)
        model.set_weights(final)
