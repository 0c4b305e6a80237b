"""Types fixed on the driver, applied on every worker: string features and the target.

String features become categoricals whose categories are the training rows' distinct values,
sorted, as data/columns.py fixes them (`Strings.fixed_by`): one list, computed once from the
training partitions and sent to every worker, so a code means the same category on each; a value
first seen in validation, test or scoring is a missing value. The target's classes are the sorted
distinct values of every row kept (columns.target_values' rule), its codes the class indices.
"""

from __future__ import annotations

import numpy as np

from mlrecipes.errors import require


def string_features(meta, features: list[str]) -> list[str]:
    """The features a frame holds as strings (numbers were cast to float32 in the scan)."""
    import pandas as pd

    return [n for n in features if not pd.api.types.is_numeric_dtype(meta[n].dtype)]


def fixed_by(train, names: list[str]) -> dict[str, list[str]]:
    """{column: sorted distinct values of the training rows}, missing values left out."""
    import dask

    found = dask.compute(*[train[n].dropna().unique() for n in names])
    return {n: sorted(str(v) for v in values) for n, values in zip(names, found, strict=True)}


def apply(frame, categories: dict[str, list[str]]):
    """One partition with its string columns as categoricals of the fixed lists (runs on a worker)."""
    import pandas as pd

    return frame.assign(**{n: pd.Categorical(frame[n].astype(object), categories=c)
                           for n, c in categories.items()})


def typed(df, categories: dict[str, list[str]]):
    """The lazy frame with `apply` on every partition."""
    if not categories:
        return df
    return df.map_partitions(apply, categories, meta=apply(df._meta, categories))


def classes_of(values, name: str) -> list:
    """The target's classes: sorted distinct values of every kept row (at least two)."""
    distinct = values.dropna().unique().compute()
    classes = sorted(str(v) for v in distinct) if not _numeric(distinct) else sorted(np.asarray(distinct).tolist())
    require(len(classes) >= 2, f"target column '{name}' has fewer than 2 classes ({len(classes)})")
    return classes


def _numeric(values) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(getattr(values, "dtype", None))


def target_codes(frame, column: str, out: str, classes: list | None):
    """`out` = class index of `column` (classification) or its float64 value (regression)."""
    import pandas as pd

    if classes is None:
        return frame.assign(**{out: frame[column].astype("float64")})
    values = frame[column].astype(object) if isinstance(classes[0], str) else frame[column]
    if isinstance(classes[0], str):
        values = values.map(lambda v: None if v is None or v != v else str(v))
    codes = pd.Categorical(values, categories=classes).codes
    return frame.assign(**{out: codes.astype("int64")})


def require_numeric_target(dtype, name: str) -> None:
    import pandas as pd

    require(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype),
            f"target column '{name}' is {dtype}, not a number: task=regression needs a numeric target")

