"""The features of a table, computed with Polars lazy expressions per key in time order.

How the no-look-ahead guarantee is built, not hoped for:
- rows are sorted by (key, order), stably (input position breaks ties), and every window is `.over(key)`: a window never
  sees another key, and a lag / row window only looks backwards (`shift(n)` with n >= 1,
  `rolling_*` ending at the current row);
- a time-span window is (t - span, t], closed on the right, ending at the current tick. Ticks of one
  key that share a timestamp keep their input order (a tie-break: put a sequence column in the
  order's place when the input order is not the arrival order); Polars' `rolling_*_by` would put
  a tick's later same-timestamp neighbours in its window, so the window runs over an integer clock
  that gives each tied tick its own instant: (time - first) * 2M + rank-within-tie, with the window
  2M * span - M wide (M a power of two above the largest tie): a row j is in row i's window exactly
  when time_j > time_i - span and j comes no later than i.

`complete=True` (scoring a slice) also works out, per feature, whether a row's windows lie wholly
inside the history the table holds for its key; `features.FeatureSet.compute_slice` blanks those
that do not.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import UserError
from . import expr as expression
from .spec import OPS, Feature

ROW, CLOCK, TIME, POS = "__row", "__clock", "__time", "__pos"


def _ok(name: str) -> str:
    return f"__ok_{name}"


def _time_unit(dtype) -> str:
    return dtype.time_unit if isinstance(dtype, pl.Datetime) else "ms"


def _units(span: timedelta, unit: str) -> int:
    """A span in the clock's unit (spans are whole milliseconds, so exact in every unit)."""
    return (span // timedelta(milliseconds=1)) * {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]


def prepare(table: pa.Table, features: list[Feature], key: str | None, order: str | None,
            raw: list[str]) -> tuple[pl.DataFrame, int, str]:
    """The columns the features read, sorted by (key, order, input position), with the integer clock
    of time-span windows; returns (frame, M, time unit)."""
    frame = pl.from_arrow(table.select(list(dict.fromkeys(c for c in (key, order, *raw) if c))),
                          rechunk=False).with_row_index(ROW)
    # NaN is a missing value, as in pandas' rolling windows (a NaN would poison a Polars window).
    frame = frame.with_columns(pl.col(c).fill_nan(None) for c in raw
                               if c not in (key, order) and frame.schema[c].is_float())
    if order is None:
        return frame, 1, "ms"
    missing = frame.get_column(order).null_count()
    if missing:
        raise UserError(f"{missing} rows have no {order!r} value: every row needs its time to compute features")
    by = [c for c in (key, order) if c]
    frame = frame.sort(by, maintain_order=True)  # stable: ticks of one timestamp keep the input order
    if not any(f.span is not None for f in features):
        return frame, 1, "ms"
    dtype = frame.schema[order]
    unit = _time_unit(dtype)
    time = pl.col(order).cast(pl.Datetime("ms")) if isinstance(dtype, pl.Date) else pl.col(order)
    frame = frame.with_columns(time.dt.epoch(unit).alias(TIME))
    # rank within a tie: the position past the first row of its run of one (key, time)
    position = pl.int_range(pl.len(), dtype=pl.Int64)
    starts = pl.any_horizontal([(pl.col(c) != pl.col(c).shift(1)).fill_null(True) for c in by])
    frame = frame.with_columns((position - pl.when(starts).then(position).forward_fill()).alias(CLOCK))
    largest = int(frame.get_column(CLOCK).max() or 0) + 1
    ties = 1 << (largest - 1).bit_length()
    spread = int(frame.get_column(TIME).max()) - int(frame.get_column(TIME).min())
    if spread * 2 * ties >= 2**62:
        raise UserError(f"{largest} ticks of one {key or 'table'} share a timestamp of {order!r}: too many to order "
                        "within a time window over this time range; add a sequence column to the order")
    first = int(frame.get_column(TIME).min())
    frame = frame.with_columns(((pl.col(TIME) - first) * (2 * ties) + pl.col(CLOCK)).alias(CLOCK))
    return frame, ties, unit


def _window(feature: Feature, x: pl.Expr, ties: int, unit: str) -> pl.Expr:
    op, need = feature.op, feature.needed
    if feature.span is None:
        return getattr(x, f"rolling_{op}")(feature.n, min_samples=need)
    width = f"{2 * ties * _units(feature.span, unit) - ties}i"
    return getattr(x, f"rolling_{op}_by")(CLOCK, width, min_samples=need, closed="right")


def expression_of(feature: Feature, ties: int, unit: str) -> pl.Expr:
    """The feature's value as a Polars expression over the prepared frame (before `.over(key)`)."""
    kind = OPS[feature.op]
    if kind == "expr":
        return expression.to_polars(feature.tree)
    if kind == "time":
        t = pl.col(feature.column)
        if feature.op == "day_of_week":
            return t.dt.weekday() - 1  # Monday 0 .. Sunday 6, as pandas' dayofweek
        # dt.hour() is an Int8: widen before multiplying
        return (t.dt.hour().cast(pl.Int64) * 3600 + t.dt.minute().cast(pl.Int64) * 60 + t.dt.second().cast(pl.Int64)
                + t.dt.nanosecond() / 1e9)
    if feature.op == "count":
        ones = pl.col(ROW).is_not_null().cast(pl.Float64)
        width = f"{2 * ties * _units(feature.span, unit) - ties}i"
        return ones.rolling_sum_by(CLOCK, width, closed="right")
    x = pl.col(feature.column).cast(pl.Float64).fill_nan(None)
    if kind == "lag":
        before = x.shift(feature.n)
        return {"lag": before, "diff": x - before, "ratio": x / before,
                "log_return": (x / before).log()}[feature.op]
    return _window(feature, x, ties, unit)


def completeness_of(feature: Feature, made: set[str], ties: int, unit: str) -> pl.Expr:
    """True where every row the feature reads (through earlier features too) is in the table: its
    windows start at or after the key's first row there."""
    inputs = [pl.col(_ok(n)) for n in feature.inputs if n in made]
    upstream = pl.all_horizontal(inputs) if inputs else pl.lit(True)
    kind = OPS[feature.op]
    if kind in ("expr", "time"):
        return upstream
    if feature.span is not None:
        reaches = pl.col(TIME).min() <= pl.col(TIME) - _units(feature.span, unit)
        if feature.op == "count" or not inputs:
            return reaches
        width = f"{2 * ties * _units(feature.span, unit) - ties}i"
        return reaches & (upstream.cast(pl.Int8).rolling_min_by(CLOCK, width, closed="right") == 1)
    if kind == "lag":
        full = pl.col(POS) >= feature.n
        return full & upstream & upstream.shift(feature.n).fill_null(False) if inputs else full
    full = pl.col(POS) >= feature.n - 1
    return full & (upstream.cast(pl.Int8).rolling_min(feature.n, min_samples=1) == 1) if inputs else full


def stages(features: list[Feature]) -> list[list[Feature]]:
    """Features in dependency layers: each layer reads only raw columns and earlier layers, so one
    `with_columns` per layer lets Polars compute a layer's features in parallel."""
    depth: dict[str, int] = {}
    layers: list[list[Feature]] = []
    for feature in features:
        level = 1 + max((depth[n] for n in feature.inputs if n in depth), default=-1)
        depth[feature.name] = level
        layers.extend([] for _ in range(level + 1 - len(layers)))
        layers[level].append(feature)
    return layers


def compute(table: pa.Table, features: list[Feature], key: str | None, order: str | None, raw: list[str],
            complete: bool = False) -> pl.DataFrame:
    """The feature columns (and, with `complete`, their __ok_ flags and the order column) in the
    input's row order."""
    frame, ties, unit = prepare(table, features, key, order, raw)
    over = (lambda e: e.over(key)) if key else (lambda e: e)
    plan = frame.lazy()
    if complete:
        plan = plan.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).over(key).alias(POS) if key
                                 else pl.int_range(pl.len(), dtype=pl.Int64).alias(POS))
    made: set[str] = set()
    for layer in stages(features):
        columns = []
        for f in layer:
            value = expression_of(f, ties, unit)
            columns.append((over(value) if f.windowed else value).cast(pl.Float64).alias(f.name))
            if complete:
                ok = completeness_of(f, made, ties, unit)
                columns.append((over(ok) if f.windowed else ok).alias(_ok(f.name)))
        plan = plan.with_columns(columns)
        made.update(f.name for f in layer)
    keep = [f.name for f in features]
    if complete:
        keep += [_ok(f.name) for f in features] + ([order] if order else [])
    done = plan.select([ROW, *keep]).collect()
    # back to the input's order: the inverse of the sort's permutation (a gather, cheaper than a sort)
    inverse = np.empty(done.height, dtype=np.int64)
    inverse[done.get_column(ROW).to_numpy()] = np.arange(done.height)
    return done.select(keep)[inverse]


def to_arrow(column: pl.Series) -> pa.Array:
    """A feature column as one float64 Arrow array (nulls where missing)."""
    return column.to_arrow().cast(pa.float64())
