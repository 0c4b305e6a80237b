"""What every peer shares: the local IDX files instead of each example's download, and the curve.

Each peer is the published example as published; only its MNIST loading is replaced by `load()`,
and a callback prints test accuracy against cumulative training seconds (the evaluation itself is
left out of the seconds), one `CURVE {json}` line per point, for bench/run.py to read.
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
    """Training clock that stops while the test set is evaluated."""

    def __init__(self):
        self.started, self.paused = time.perf_counter(), 0.0

    def record(self, step: int, accuracy_fn) -> float:
        t0 = time.perf_counter()
        accuracy = float(accuracy_fn())
        point = {"step": step, "seconds": round(t0 - self.started - self.paused, 3), "test_accuracy": accuracy}
        print("CURVE " + json.dumps(point), flush=True)
        self.paused += time.perf_counter() - t0
        return accuracy
