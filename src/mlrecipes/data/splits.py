"""Split: which rows train, which pick the early-stopping point, which are kept for the test.

- `random`: shuffled with a fixed seed, stratified by class when every class can be split.
- `time`: ordered by the time column; the latest rows are the test set, the slice before them the
  validation set. Cuts fall between distinct timestamps, so every training row is strictly older
  than every validation row, and every validation row strictly older than every test row: no
  look-ahead, even when many ticks share a timestamp.
- `column`: a column names each row's split (train / validation / test).
"""

from __future__ import annotations

import numpy as np

from mlrecipes.errors import UserError, require

METHODS = ("random", "time", "column")
SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
               "valid": "validation", "test": "test"}


def fraction(value, name: str) -> float:
    require(0 < float(value) < 1, f"data.{name} must be in (0, 1), got {value}")
    return float(value)


def random_split(n: int, y: np.ndarray | None, test_fraction: float, val_fraction: float, seed: int):
    """(train, validation, test) row indices; `val_fraction` is of what remains after the test."""
    rows = np.arange(n)
    pool, test = holdout(rows, y, fraction(test_fraction, "test_fraction"), seed)
    train, val = holdout(pool, None if y is None else y[pool], fraction(val_fraction, "val_fraction"), seed)
    return train, val, test


def holdout(rows: np.ndarray, y: np.ndarray | None, size: float, seed: int):
    """Deterministic, stratified when every class can be split."""
    from sklearn.model_selection import train_test_split

    stratify = None
    if y is not None:
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 else None
    try:
        kept, held = train_test_split(rows, test_size=size, random_state=int(seed), stratify=stratify)
    except ValueError as exc:  # too few rows for the requested split
        raise UserError(f"cannot split {len(rows)} rows with fraction {size}: {exc}") from None
    return np.sort(kept), np.sort(held)


def time_split(times: np.ndarray, test_fraction: float, val_fraction: float, column: str):
    """Cut the ordered rows at distinct timestamps: the latest ~test_fraction rows are the test set."""
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    n = len(ordered)
    test_start = _cut(ordered, n, fraction(test_fraction, "test_fraction"))
    val_start = _cut(ordered, test_start, fraction(val_fraction, "val_fraction"))
    parts = {"train": order[:val_start], "validation": order[val_start:test_start], "test": order[test_start:]}
    for name, rows in parts.items():
        if len(rows) == 0:
            raise UserError(
                f"time split on '{column}' leaves {name} empty: {n} rows over "
                f"{len(np.unique(ordered))} distinct times; use more data or other fractions"
            )
    return tuple(np.sort(parts[k]) for k in ("train", "validation", "test"))


def _cut(ordered: np.ndarray, end: int, size: float) -> int:
    """Index of the first row of the last `size` share of ordered[:end], moved back to a time boundary."""
    if end == 0:
        return 0
    start = min(end - 1, int(np.floor(end * (1 - size))))
    # Rows that share the boundary's timestamp all go to the later split.
    return int(np.searchsorted(ordered[:end], ordered[start], side="left"))


def column_split(values: np.ndarray, column: str):
    names = np.array([SPLIT_NAMES.get(str(v).strip().lower(), "") for v in values])
    unknown = sorted({str(v) for v, n in zip(values, names, strict=True) if not n})
    require(not unknown, f"split column '{column}' has values other than train / validation / test: "
                         f"{', '.join(unknown[:5])}")
    parts = tuple(np.flatnonzero(names == k) for k in ("train", "validation", "test"))
    for name, rows in zip(("train", "validation", "test"), parts, strict=True):
        require(len(rows) > 0, f"split column '{column}' names no {name} rows")
    return parts


def time_ranges(times: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, str]:
    """`data.split.<part>.time_min/max` params: the absence of look-ahead, visible on every run."""
    out = {}
    for name, rows in parts.items():
        if len(rows):
            out[f"data.split.{name}.time_min"] = str(times[rows].min())
            out[f"data.split.{name}.time_max"] = str(times[rows].max())
    return out


def split_table(cfg, arrow, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(train, validation, test) row indices of an Arrow table by the data group's `split`, and the
    split's params. `y`: class indices to stratify a random split by (None for regression)."""
    method = str(cfg.get("split") or "random")
    require(method in METHODS, f"unknown data.split '{method}'; valid: {', '.join(METHODS)}")
    time_column = cfg.get("time_column")
    times = arrow.column(time_column).to_numpy(zero_copy_only=False) if time_column else None
    if method == "time":
        require(bool(time_column), "data.split=time needs data.time_column (the column that orders the rows)")
        train, val, test = time_split(times, cfg.test_fraction, cfg.val_fraction, time_column)
    elif method == "column":
        column = cfg.get("split_column")
        require(bool(column), "data.split=column needs data.split_column (a column naming each row's split)")
        train, val, test = column_split(arrow.column(column).to_numpy(zero_copy_only=False), column)
    else:
        train, val, test = random_split(arrow.num_rows, y, cfg.test_fraction, cfg.val_fraction, cfg.seed)
    params = {"data.split.method": method}
    if times is not None:  # also for random splits: shows how much they look ahead
        params.update(time_ranges(times, {"train": train, "validation": val, "test": test}))
    return train, val, test, params
