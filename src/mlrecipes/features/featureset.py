"""FeatureSet: a feature definition as the recipe and scoring use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from ..errors import UserError, require
from .checks import check
from .spec import Feature, Lookback, parse_feature

TOP_KEYS = {"key", "order", "define", "transform"}  # transform: features.transform (fitted)


@dataclass
class Slice:
    """What `FeatureSet.compute_slice` gives: the slice's rows with their features, and how many of
    them had a feature blanked because its window reaches before the history in the table."""

    table: pa.Table
    short_rows: int = 0
    short_by_feature: dict[str, int] = field(default_factory=dict)


class FeatureSet:
    def __init__(self, features: list[Feature], key: str | None = None, order: str | None = None):
        self.features, self.key, self.order = list(features), key, order

    # ------------------------------------------------------------------ definition
    @classmethod
    def from_config(cls, node, time_column: str | None = None) -> FeatureSet:
        """The `features` group's node (a DictConfig, a dict or None); `order` defaults to the data
        group's time column."""
        if node is None:
            return cls([])
        if not isinstance(node, dict):
            from omegaconf import OmegaConf

            node = OmegaConf.to_container(node, resolve=True)
        require(isinstance(node, dict), f"the features group must be a mapping, not {node!r}")
        unknown = sorted(set(node) - TOP_KEYS)
        require(not unknown, f"features: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
        order = node.get("order") or time_column
        define = node.get("define") or []
        require(isinstance(define, list), "features.define must be a list of features")
        key = node.get("key")
        require(key is None or isinstance(key, str), f"features.key must be one column name, not {key!r}")
        return cls([parse_feature(item, i, order) for i, item in enumerate(define)], key, order)

    def to_dict(self) -> dict:
        """The definition as plain data: logged with the model, read back by `from_dict` at scoring."""
        return {"key": self.key, "order": self.order, "define": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSet:
        return cls.from_config(data)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def columns_needed(self) -> list[str]:
        """The raw columns to read: the key, the order and every column a feature reads, whether or
        not it is a model feature itself."""
        if not self.features:
            return []
        made = set(self.names)
        inputs = [n for f in self.features for n in f.inputs if n not in made]
        return list(dict.fromkeys(c for c in (self.key, self.order, *inputs) if c))

    def reading_now(self, column: str) -> list[str]:
        """The features whose value at a tick reads `column` at that same tick, directly or through
        earlier features (a window holds the current row; a lag of n >= 1 does not): on the target
        column, the label leaking into the model."""
        now: set[str] = set()
        for f in self.features:
            if f.op != "lag" and any(n == column or n in now for n in f.inputs):
                now.add(f.name)
        return [f.name for f in self.features if f.name in now]

    def lookback(self) -> Lookback:
        """The history the longest chain of windows needs before a tick (see spec.Lookback)."""
        need: dict[str, Lookback] = {}
        total = Lookback()
        for f in self.features:
            before = Lookback()
            for name in f.inputs:
                before = before.union(need.get(name, Lookback()))
            need[f.name] = f.own_lookback + before
            total = total.union(need[f.name])
        return total

    # ------------------------------------------------------------------ on a table
    def validate(self, schema: pa.Schema) -> None:
        check(self.features, self.key, self.order, schema)

    def _raw(self) -> list[str]:
        return [c for c in self.columns_needed() if c not in (self.key, self.order)]

    def compute(self, table: pa.Table) -> pa.Table:
        """The table with one float64 column per feature appended, rows in the input's order."""
        from .compute import compute, to_arrow

        if not self.features:
            return table
        self.validate(table.schema)
        frame = compute(table, self.features, self.key, self.order, self._raw())
        for name in self.names:
            table = table.append_column(pa.field(name, pa.float64()), to_arrow(frame.get_column(name)))
        return table

    def compute_slice(self, table: pa.Table, start) -> Slice:
        """Scoring: `table` holds the slice (rows whose order value is >= `start`) and the history
        read before it. Returns the slice's rows with their features, where a feature whose windows
        reach before the history the table holds for the row's key is missing (null), never a
        shorter window than training computed; `short_rows` counts the rows with such a blank."""
        import polars as pl

        from .compute import compute, to_arrow

        require(self.order is not None or not self.features, "a slice needs an order column to start at")
        if not self.features:
            return Slice(table)
        self.validate(table.schema)
        frame = compute(table, self.features, self.key, self.order, self._raw(), complete=True)
        if isinstance(start, str):
            try:
                start = datetime.fromisoformat(start)
            except ValueError:
                raise UserError(f"slice start {start!r} is not an ISO date or time") from None
        inside = frame.get_column(self.order) >= start
        rows = inside.arg_true()
        part = frame[rows]
        out = table.take(pa.array(rows.to_numpy()))
        short = pl.Series([False] * len(part), dtype=pl.Boolean)
        by_feature = {}
        for name in self.names:
            ok = part.get_column(f"__ok_{name}").fill_null(False)
            by_feature[name] = int((~ok).sum())
            short = short | ~ok
            value = part.get_column(name).zip_with(ok, pl.Series([None] * len(part), dtype=pl.Float64))
            out = out.append_column(pa.field(name, pa.float64()), to_arrow(value))
        return Slice(out, int(short.sum()), {k: v for k, v in by_feature.items() if v})
