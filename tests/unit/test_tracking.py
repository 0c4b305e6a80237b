"""Dataset inputs: the schema logged for a table's split is the one MLflow infers, computed cheaply."""

import json
import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.types.utils import _infer_schema

from mlrecipes import data, tracking


def frames():
    rng = np.random.default_rng(0)
    n = 5_000
    price = rng.random(n, dtype=np.float32)
    price[7] = np.nan
    yield pd.DataFrame({
        "price": price,
        "size": np.ones(n, np.float32),
        "symbol": pd.Categorical.from_codes(rng.integers(-1, 3, n), categories=["AAPL", "MSFT", "005930"]),
        "venue": pd.Categorical.from_codes(rng.integers(0, 2, n), categories=["XNAS", "XKRX"]),
        "direction": rng.integers(0, 3, n),
    })
    # no value at all, with and without categories; strings as objects
    yield pd.DataFrame({"symbol": pd.Categorical.from_codes(np.full(3, -1), categories=["AAPL"]),
                        "venue": pd.Categorical.from_codes(np.full(3, -1), categories=[]),
                        "note": np.array(["a", None, "c"], dtype=object)})


@pytest.mark.parametrize("frame", list(frames()))
def test_the_schema_is_mlflows_own_inference(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tracking.schema(frame) == _infer_schema(frame)


def test_every_logged_split_carries_that_schema(tracking_uri):
    """Through log_dataset, as a run logs a table's splits."""
    frame = next(frames())
    y = frame.pop("direction").to_numpy()
    ds = data.Dataset("ticks", "s3://lake/ticks", frame, y, frame.iloc[:100], y[:100], frame.iloc[:50], y[:50],
                      ["down", "flat", "up"], feature_names=list(frame.columns), target="direction")
    with mlflow.start_run() as run:
        tracking.log_dataset(ds)
    logged = {i.dataset.name: i.dataset for i in mlflow.get_run(run.info.run_id).inputs.dataset_inputs}
    assert set(logged) == {"ticks-train", "ticks-validation", "ticks-test"}
    columns = json.loads(logged["ticks-train"].schema)["mlflow_colspec"]
    assert [(c["name"], c["type"], c["required"]) for c in columns] == [
        ("price", "float", False), ("size", "float", True), ("symbol", "string", False),
        ("venue", "string", True), ("direction", "long", True)]
    # the whole split, not a sample
    assert [json.loads(logged[f"ticks-{part}"].profile)["num_rows"] for part in ("train", "validation", "test")] \
        == [len(frame), 100, 50]
