"""The history a slice's window features need, read from the table before the slice.

A model trained with window features (mlrecipes.features) is scored on its slice plus the rows
before it that its windows reach: `FeatureSet.lookback()` says how far, a time span then a row
count per key (ticks.yaml: 5 minutes, then 20 ticks of the symbol). Both are read here:

- the span is one read: the rows of the slice's keys from `start - span` up to the slice's start
  (start: the slice's earliest time);
- "N rows per key before that point" is read backwards in time windows that double in width,
  only for the keys still short of N rows, until every key has them or the table has no older
  row for it (a `count_rows` with the same filter, which Parquet statistics and partition pruning
  answer without reading the rows). The first window is sized from the slice's own tick rate, so
  a dense symbol is served by one read and a sparse one by a few; the last read may hold more than
  needed, at most what its width covers (across a night: the previous session).

The history is read with the data group's `filters` (the rows training computed its features on)
but not the time window, which only bounds the slice. The result: the history then the slice, in
scan order, which keeps ticks of one timestamp in the order training saw them; it is held in
memory (the slice and its lookback), not streamed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from mlrecipes.data import tables
from mlrecipes.features import FeatureSet


@dataclass
class Window:
    """The slice with its history: `table` (history rows first), the slice's `start`, and how much
    history each key of the slice has before `edge` (start - span) where it had less than `need`."""

    table: pa.Table | None
    start: object
    slice_rows: int
    edge: object = None
    need: int = 0
    short_keys: dict = field(default_factory=dict)  # key value -> rows found before the edge (< need)


@dataclass
class Extent:
    """What the lookback reads from knowing the slice: its first and last order values (in the
    table's types), its rows and its keys ([None] without a key). compute.features finds them on a
    cluster without bringing the slice to the driver."""

    start: object
    end: object
    rows: int
    keys: list


def read_window(source: tables.TableSource, columns: list[str], fs: FeatureSet, filters: list) -> Window | None:
    """The slice (`source`'s filter) and the history its features need; None for an empty slice."""
    piece = source.read(columns)
    if piece.num_rows == 0:
        return None
    keys = pc.unique(piece.column(fs.key)).drop_null().to_pylist() if fs.key else [None]
    extent = Extent(pc.min(piece.column(fs.order)).as_py(), pc.max(piece.column(fs.order)).as_py(),
                    piece.num_rows, keys)
    window = history(source, columns, fs, filters, extent)
    if window.table is None:
        return dataclasses.replace(window, table=piece)
    return dataclasses.replace(window, table=pa.concat_tables([window.table, piece.select(window.table.column_names)]))


def history(source: tables.TableSource, columns: list[str], fs: FeatureSet, filters: list, extent: Extent) -> Window:
    """The rows before the slice that its features need, oldest first (`Window.table`: the history
    alone; None when no feature reads another row)."""
    order, key, keys = fs.order, fs.key, extent.keys
    lookback = fs.lookback()
    if not lookback.rows and not lookback.span:  # no feature reads another row
        return Window(None, extent.start, extent.rows)
    schema = source.schema
    kind = tables.value_type(schema.field(order).type)
    base, _ = tables.filter_expression(filters, schema)
    edge = earlier(extent.start, lookback.span) if lookback.span else extent.start
    recent = _read(source, columns, _within(base, key, keys, schema, order, kind, edge, extent.start))
    need = max(lookback.rows, 1)  # a span needs one tick at or before its edge to be whole
    older, found = _rows_before(source, columns, base, key, keys, order, kind, edge, need, _first_width(extent, need))
    short = {k: n for k, n in found.items() if n < need}
    return Window(pa.concat_tables([*older, recent]), extent.start, extent.rows, edge, need, short)


def _rows_before(source, columns, base, key, keys, order, kind, edge, need: int, width):
    """Per key, at least `need` rows before `edge` where the table has them: windows read backwards,
    each twice as wide as the last, for the keys still short. Returns (parts oldest first, rows found per key)."""
    found = dict.fromkeys(keys, 0)
    parts: list[pa.Table] = []
    upper, short = edge, list(keys)
    while short:
        lower = earlier(upper, width)
        part = _read(source, columns, _within(base, key, short, source.schema, order, kind, lower, upper))
        parts.append(part)
        if key:
            for item in pc.value_counts(part.column(key)).to_pylist():
                found[item["values"]] = found.get(item["values"], 0) + item["counts"]
        else:
            found[None] += part.num_rows
        short = [k for k in short if found[k] < need]
        if short and not source.dataset.count_rows(filter=_within(base, key, short, source.schema, order, kind,
                                                                  None, lower)):
            break  # the table holds nothing older for them
        upper, width = lower, width * 2
    return parts[::-1], found


def _first_width(extent: Extent, need: int):
    """A time (or sequence) width in which a key of the slice's tick rate has about 2 * need rows."""
    low, high = extent.start, extent.end
    per_key = max(extent.rows / max(len(extent.keys), 1), 1.0)
    if isinstance(low, datetime | date):
        floor = timedelta(seconds=1) if isinstance(low, datetime) else timedelta(days=1)
        spread = _as_datetime(high) - _as_datetime(low)
        return max(spread * (2 * need / per_key), floor)
    return max(int((high - low) * 2 * need / per_key), 1)


def earlier(value, width):
    """`value` moved back by `width`; a date moves to the day that holds the earlier instant."""
    if isinstance(value, datetime) or not isinstance(value, date):
        return value - width
    return (_as_datetime(value) - width).date()


def _as_datetime(value):
    return value if isinstance(value, datetime) else datetime.combine(value, time())


def _within(base, key, keys, schema, order, kind, lower, upper):
    """base and key in keys and lower <= order < upper (lower None: no bound)."""
    terms = [] if base is None else [base]
    if key:
        terms.append(pc.field(key).isin(pa.array(keys, type=tables.value_type(schema.field(key).type))))
    if lower is not None:
        terms.append(pc.field(order) >= pa.scalar(lower, type=kind))
    terms.append(pc.field(order) < pa.scalar(upper, type=kind))
    expression = terms[0]
    for term in terms[1:]:
        expression = expression & term
    return expression


def _read(source: tables.TableSource, columns: list[str], expression) -> pa.Table:
    """`columns` of the rows `expression` selects, with the reader's own one-line errors."""
    return dataclasses.replace(source, filter=expression).read(columns)
