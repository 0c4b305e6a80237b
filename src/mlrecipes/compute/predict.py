"""Predictions made on the workers: a model travels once, loads once per worker, and each
partition comes back as its target plus the model's output (metrics.partial's input) or as the
rows a scorer writes.

Native boosters (training's evaluation) travel as their own bytes, scattered to every worker;
a registered pyfunc (the gate's re-scoring of a champion, scoring) travels as its URI and is loaded
by each worker from the registry. Either is kept in a per-process cache keyed by its digest or
URI: a worker loads it for its first partition, not for every one.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mlrecipes.compute import metrics

_LOADED: dict[str, object] = {}  # per worker process: model key -> loaded model


def raw_model(framework: str, booster) -> tuple[bytes, str]:
    """(the booster's bytes in its own format, their digest): what workers load it from."""
    data = bytes(booster.save_raw("ubj")) if framework == "xgboost" else booster.model_to_string().encode()
    return data, hashlib.sha256(data).hexdigest()[:16]


def native(framework: str, data: bytes, key: str):
    """The booster of `data`, loaded once per worker process."""
    booster = _LOADED.get(key)
    if booster is None:
        if framework == "xgboost":
            import xgboost

            booster = xgboost.Booster()
            booster.load_model(bytearray(data))
        else:
            import lightgbm

            booster = lightgbm.Booster(model_str=data.decode())
        _LOADED[key] = booster
    return booster


def booster_output(booster, framework: str, X, **kwargs) -> np.ndarray:
    """(n, classes) probabilities, (n,) P(positive) or (n,) values: the booster's predict."""
    if framework == "xgboost":
        import xgboost

        return booster.predict(xgboost.DMatrix(X, enable_categorical=True), **kwargs)
    return booster.predict(X, **kwargs)


def output_columns(task: str, k: int) -> list[str]:
    return [metrics.PREDICTION] if task == "regression" else metrics.proba_columns(k)


def scored(frame, framework: str, data, key: str, features: list[str], task: str, k: int, target: str):
    """One partition: `target` and the booster's output columns (runs on a worker)."""
    import pandas as pd

    if len(frame) == 0:  # a partition the split left empty (a booster predicts a flat (0,) for it)
        return pd.DataFrame({target: frame[target].to_numpy(),
                             **{c: np.zeros(0) for c in output_columns(task, k)}}, index=frame.index)
    out = np.asarray(booster_output(native(framework, data, key), framework, frame[features]), dtype=np.float64)
    if task == "regression":
        columns = {metrics.PREDICTION: out.reshape(-1)}
    else:
        proba = out if out.ndim == 2 else np.column_stack([1 - out, out])
        columns = {f"p{i}": proba[:, i] for i in range(k)}
    return pd.DataFrame({target: frame[target].to_numpy(), **columns}, index=frame.index)


def scored_frames(client, df, framework: str, booster, features: list[str], task: str, k: int, target: str):
    """`scored` over every partition of `df`, the booster scattered once to every worker."""
    import pandas as pd

    data, key = raw_model(framework, booster)
    shared = client.scatter(data, broadcast=True, hash=False)
    meta = pd.DataFrame({target: df._meta[target], **{c: pd.Series([], dtype="float64")
                                                     for c in output_columns(task, k)}})
    return df.map_partitions(scored, framework, shared, key, features, task, k, target, meta=meta)


def constant(frame, values: np.ndarray, task: str, target: str):
    """One partition scored by a constant model (the baseline: training class shares or mean)."""
    import pandas as pd

    n = len(frame)
    if task == "regression":
        columns = {metrics.PREDICTION: np.full(n, float(values[0]))}
    else:
        columns = {f"p{i}": np.full(n, float(v)) for i, v in enumerate(values)}
    return pd.DataFrame({target: frame[target].to_numpy(), **columns}, index=frame.index)


def pyfunc(uri: str):
    """A logged model, loaded once per worker process."""
    model = _LOADED.get(uri)
    if model is None:
        import mlflow

        model = _LOADED[uri] = mlflow.pyfunc.load_model(uri)
    return model


def raw_rows(frame, features: list[str]):
    """Features as a scorer hands them over: categoricals back to strings (missing: None)."""
    import pandas as pd

    out = {}
    for name in features:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object).where(column.notna(), None)
        out[name] = column
    return pd.DataFrame(out, index=frame.index)


def pyfunc_scored(frame, uri: str, features: list[str], class_names: list[str], task: str, target: str):
    """One partition scored by a logged table model, in this run's class order (runs on a worker)."""
    import pandas as pd

    if len(frame) == 0:
        return pd.DataFrame({target: frame[target].to_numpy(),
                             **{c: np.zeros(0) for c in output_columns(task, len(class_names))}}, index=frame.index)
    model = pyfunc(uri)
    schema = model.metadata.get_input_schema()
    needed = schema.input_names() if schema is not None else features
    out = model.predict(raw_rows(frame, features)[needed])
    if task == "regression":
        columns = {metrics.PREDICTION: out["prediction"].to_numpy(np.float64)}
    else:
        columns = {f"p{i}": np.clip(out[f"proba_{c}"].to_numpy(np.float64), 1e-12, None)
                   if f"proba_{c}" in out.columns else np.full(len(out), 1e-12) for i, c in enumerate(class_names)}
    return pd.DataFrame({target: frame[target].to_numpy(), **columns}, index=frame.index)


def model_bytes(uri: str) -> tuple[bytes, str]:
    """A registered model's MLflow directory as zip bytes (what scoring's workers load it from, so
    they need no access to the registry) and a digest of its files (the same model, the same key)."""
    import io
    import tempfile
    import zipfile
    from pathlib import Path

    import mlflow

    buffer, digest = io.BytesIO(), hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = str(path.relative_to(root))
            digest.update(name.encode() + b"\0" + path.read_bytes())
            archive.write(path, name)
    return buffer.getvalue(), digest.hexdigest()[:16]


def pyfunc_of(data: bytes, key: str):
    """The pyfunc of model_bytes' zip, loaded once per worker process (unpacked, loaded, the files removed)."""
    model = _LOADED.get(key)
    if model is None:
        import io
        import tempfile
        import zipfile

        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            zipfile.ZipFile(io.BytesIO(data)).extractall(tmp)
            model = _LOADED[key] = mlflow.pyfunc.load_model(tmp)
    return model
