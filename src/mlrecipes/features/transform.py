"""Fitted transforms (MLflow Recipes' transform step): a scikit-learn transformer named in config,
fitted on the training rows only, saved inside the model and applied by it at scoring.

    features:
      transform: {_target_: sklearn.preprocessing.StandardScaler}

`build` instantiates it (hydra.utils.instantiate: any importable class and its arguments);
`fit` fits it on the training rows of the numeric feature columns (computed features and numeric
raw columns; string categories are left to the boosters) and maps every row with it. The transform
maps each column to one (a scaler, a quantile or power transform, an imputer that keeps every
column): the model's columns keep their names. `save` writes it with skops (no pickle: loading
runs no code), and returns the types it needed beyond skops' safe defaults, which the model
trusts when it loads the file (mlrecipes/table_model.py applies it the same way: float32 in, the
transformer, float32 out).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError, one_line, require


def build(node):
    """The unfitted transformer of `features.transform` (None when unset)."""
    if node is None:
        return None
    from omegaconf import DictConfig, OmegaConf

    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    require(isinstance(spec, dict) and isinstance(spec.get("_target_"), str),
            f"features.transform must be a mapping with a _target_ (a scikit-learn transformer's class), "
            f"e.g. {{_target_: sklearn.preprocessing.StandardScaler}}, not {spec!r}")
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        transformer = instantiate(spec)
    except InstantiationException as exc:
        raise UserError(f"features.transform: cannot make {spec['_target_']}: {one_line(str(exc))}") from None
    require(hasattr(transformer, "fit") and hasattr(transformer, "transform"),
            f"features.transform: {spec['_target_']} is no transformer (it needs fit and transform)")
    return transformer


def name_of(transformer) -> str:
    kind = type(transformer)
    return f"{kind.__module__}.{kind.__qualname__}"


def fit(transformer, X: dict[str, np.ndarray], columns: list[str], train: np.ndarray) -> None:
    """Fit on the training rows of `columns`, then replace every row of them with its transform
    (float32, as the model gets it at scoring)."""
    import pandas as pd

    require(bool(columns), "features.transform: the model has no numeric feature column to transform")
    frame = pd.DataFrame({name: X[name] for name in columns})
    try:
        transformer.fit(frame.iloc[train])
        out = np.asarray(transformer.transform(frame), dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise UserError(f"features.transform: {name_of(transformer)} cannot fit the training rows: "
                        f"{one_line(str(exc))}") from None
    require(out.shape == frame.shape,
            f"features.transform: {name_of(transformer)} maps {frame.shape[1]} columns to {out.shape[1]}: a "
            "transform must map each column to one (a scaler, a quantile or power transform, an imputer)")
    for i, name in enumerate(columns):
        X[name] = np.ascontiguousarray(out[:, i])


def save(transformer, path: str) -> list[str]:
    """Write the fitted transformer with skops; returns the types its loader must be told to trust."""
    import skops.io as sio

    sio.dump(transformer, path)
    return sio.get_untrusted_types(file=path)
