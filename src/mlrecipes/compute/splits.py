"""The split computed on the cluster, without collecting or sorting the table.

Every row gets a part label (0 train, 1 validation, 2 test) in a column `PART`, from which each
part is a lazy filter of the same partitions.

- `time`: the rule of data/splits.py, exactly. Ordered by time, the test set starts at the row at
  position floor(n·(1 - test_fraction)), moved back to the first row of its timestamp; validation
  the same within the rows before the test. So a cut is a timestamp t: the part is `time >= t`, and
  finding t is finding the k-th smallest time, which `kth` does by counting rows in ever narrower
  ranges of time (a histogram of 4096 bins per pass, on the workers) until few enough remain to
  bring to the driver: 1-3 passes over the persisted column, never a sort.
- `random`: each partition draws its rows' parts from a generator seeded by (seed, partition
  number): the same rows for the same files and partitioning, but not data/splits.py's stratified
  shuffle of the whole table (which needs every row in one place).
- `column`: the split column's values (train / validation / test and their aliases).
"""

from __future__ import annotations

import numpy as np

from mlrecipes.data import splits
from mlrecipes.errors import UserError, require

PART = "__mlrecipes_part"
NAMES = ("train", "validation", "test")
BINS = 4096
GATHER = 200_000  # times in the last range brought to the driver to pick the k-th exactly


def as_int(series):
    """A time column as int64 (datetime64: its ticks in its own unit; integers as they are)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.astype("int64")
    require(pd.api.types.is_integer_dtype(series.dtype),
            f"time column '{series.name}' is {series.dtype}: split=time on the cluster needs timestamps, "
            "dates or integers")
    return series.astype("int64")


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    inside = values[(values >= edges[0]) & (values < edges[-1])]
    return np.bincount(np.searchsorted(edges, inside, side="right") - 1, minlength=len(edges) - 1)


def _between(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return values[(values >= lo) & (values <= hi)]


def kth(times, k: int, lo: int, hi: int, n: int) -> int:
    """The k-th smallest (0-based) of the int64 dask Series `times` (n values in [lo, hi])."""
    import dask

    require(0 <= k < n, f"kth: k={k} outside 0..{n - 1}")
    parts = [dask.delayed(np.asarray)(p) for p in times.to_delayed()]
    below, inside = 0, n  # values < lo; values in [lo, hi]
    while inside > GATHER and hi > lo:
        width = hi + 1 - lo
        edges = np.unique(np.array([lo + (j * width) // BINS for j in range(BINS + 1)], dtype=np.int64))
        counts = sum(dask.compute(*[dask.delayed(_histogram)(p, edges) for p in parts]))
        cum = np.cumsum(counts)
        i = int(np.searchsorted(cum, k - below, side="right"))  # the first bin holding the k-th
        below += int(cum[i - 1]) if i else 0
        lo, hi, inside = int(edges[i]), int(edges[i + 1]) - 1, int(counts[i])
    if hi == lo:
        return lo
    values = np.sort(np.concatenate(dask.compute(*[dask.delayed(_between)(p, lo, hi) for p in parts])))
    return int(values[k - below])


def _cut(times, end: int, size: float, lo: int, hi: int, n: int) -> int | None:
    """The first time of the last `size` share of the `end` smallest times (splits._cut's rule)."""
    if end == 0:
        return None
    start = min(end - 1, int(np.floor(end * (1 - size))))
    return kth(times, start, lo, hi, n)


def time_cuts(df, column: str, test_fraction, val_fraction) -> tuple[int, int, dict[str, int]]:
    """(validation's first time, test's first time, rows per part) as int64 times."""
    import dask

    test_size = splits.fraction(test_fraction, "test_fraction")
    val_size = splits.fraction(val_fraction, "val_fraction")
    times = df[column].map_partitions(as_int, meta=(column, "int64"))
    n, lo, hi = (int(v) for v in dask.compute(times.size, times.min(), times.max()))
    require(n > 0, "no rows to split")
    test_from = _cut(times, n, test_size, lo, hi, n)
    before_test = int((times < test_from).sum().compute())
    val_from = _cut(times, before_test, val_size, lo, hi, n)
    train = int((times < val_from).sum().compute()) if val_from is not None else 0
    counts = {"train": train, "validation": before_test - train, "test": n - before_test}
    for name, count in counts.items():
        if count == 0:
            distinct = int(times.nunique().compute())
            raise UserError(f"time split on '{column}' leaves {name} empty: {n} rows over {distinct} distinct "
                            "times; use more data or other fractions")
    return val_from, test_from, counts


def _time_parts(frame, column: str, val_from: int, test_from: int):
    t = as_int(frame[column])
    return frame.assign(**{PART: ((t >= val_from).astype("int8") + (t >= test_from).astype("int8"))})


def _random_parts(frame, seed: int, test_size: float, val_size: float, partition_info=None):
    number = (partition_info or {}).get("number", 0)
    draw = np.random.default_rng([int(seed), int(number)]).random(len(frame))
    part = np.where(draw < test_size, 2, np.where(draw < test_size + (1 - test_size) * val_size, 1, 0))
    return frame.assign(**{PART: part.astype("int8")})


def _column_parts(frame, column: str):
    lookup = {k: NAMES.index(v) for k, v in splits.SPLIT_NAMES.items()}
    names = frame[column].astype("string").str.strip().str.lower()
    part = names.map(lookup)
    unknown = sorted({str(v) for v in frame[column][part.isna()]})
    require(not unknown, f"split column '{column}' has values other than train / validation / test: "
                         f"{', '.join(unknown[:5])}")
    return frame.assign(**{PART: part.astype("int8")})


def label(cfg, df) -> tuple[object, dict[str, object]]:
    """(df with the PART column, the split's params as a single-process run logs them)."""
    import dask
    import pandas as pd

    method = str(cfg.get("split") or "random")
    require(method in splits.METHODS, f"unknown data.split '{method}'; valid: {', '.join(splits.METHODS)}")
    time_column = cfg.get("time_column")
    meta = df._meta.assign(**{PART: pd.Series([], dtype="int8")})
    if method == "time":
        require(bool(time_column), "data.split=time needs data.time_column (the column that orders the rows)")
        val_from, test_from, _ = time_cuts(df, str(time_column), cfg.test_fraction, cfg.val_fraction)
        out = df.map_partitions(_time_parts, str(time_column), val_from, test_from, meta=meta)
    elif method == "column":
        column = cfg.get("split_column")
        require(bool(column), "data.split=column needs data.split_column (a column naming each row's split)")
        out = df.map_partitions(_column_parts, str(column), meta=meta)
    else:
        out = df.map_partitions(_random_parts, int(cfg.seed), splits.fraction(cfg.test_fraction, "test_fraction"),
                                splits.fraction(cfg.val_fraction, "val_fraction"), meta=meta)
    params: dict[str, object] = {"data.split.method": method}
    if method != "time":
        counts = out[PART].value_counts().compute()
        for i, name in enumerate(NAMES):
            require(int(counts.get(i, 0)) > 0, f"data.split={method} leaves no {name} rows")
    if time_column:  # also for random splits: shows how much they look ahead
        parts = [out[out[PART] == i][str(time_column)] for i in range(3)]
        ranges = dask.compute(*[s.min() for s in parts], *[s.max() for s in parts])
        for i, name in enumerate(NAMES):
            params[f"data.split.{name}.time_min"] = _text(ranges[i])
            params[f"data.split.{name}.time_max"] = _text(ranges[3 + i])
    return out, params


def _text(value) -> str:
    """A time as data/splits.time_ranges writes it (numpy's text of the value)."""
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        return str(value.to_datetime64())
    return str(value)
