"""One feature as the config describes it: parsed, checked for shape, and written back.

A feature is a dict of the `define` list of a `conf/features/` group:

    {name: ret_5, op: log_return, column: price, n: 5}        # against the price 5 ticks before
    {name: vol_60s, op: std, column: ret_1, span: 60s}        # over the last 60 s, this tick included
    {name: ret_z, expr: "ret_1 / vol_60s"}                    # arithmetic over earlier features

This module knows the vocabulary (ops, spans, lookbacks); what a feature means on a table lives in
`compute`, whether it fits a table's schema in `checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from ..errors import UserError, require
from . import expr as expression

# op -> what it needs: "lag" (n rows back), "window" (n rows or a span), "span" (a span only),
# "time" (a timestamp), "expr" (an expression).
LAG_OPS = ("lag", "diff", "ratio", "log_return")
WINDOW_OPS = ("mean", "std", "min", "max", "sum")
OPS = {**dict.fromkeys(LAG_OPS, "lag"), **dict.fromkeys(WINDOW_OPS, "window"), "count": "span",
       "time_of_day": "time", "day_of_week": "time", "expr": "expr"}
KEYS = {"name", "op", "column", "n", "span", "min_periods", "expr"}

_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1)}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_span(text, where: str) -> timedelta:
    """'30s', '5m', '1h', '500ms', '1d' -> a timedelta (> 0)."""
    match = _SPAN.match(str(text))
    require(match is not None and int(match.group(1)) > 0,
            f"{where}: span {text!r} is not a duration like 30s, 5m, 1h, 500ms or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_span(span: timedelta) -> str:
    """The shortest spelling parse_span reads back."""
    ms = span // timedelta(milliseconds=1)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class Lookback:
    """The history a feature needs before a tick: `span` of time before it, then `rows` more rows
    of the same key before that point. Chains add up: a 60 s std of a 1-tick return needs 60 s,
    then 1 row."""

    rows: int = 0
    span: timedelta = timedelta(0)

    def __add__(self, other: Lookback) -> Lookback:
        return Lookback(self.rows + other.rows, self.span + other.span)

    def union(self, other: Lookback) -> Lookback:
        return Lookback(max(self.rows, other.rows), max(self.span, other.span))

    def __str__(self) -> str:
        return f"{self.rows} rows and {format_span(self.span) if self.span else '0s'}"


@dataclass(frozen=True)
class Feature:
    name: str
    op: str
    column: str | None = None          # the input: a raw column or an earlier feature
    n: int | None = None               # rows: lag distance or row-window length
    span: timedelta | None = None      # a time window (t - span, t]
    min_periods: int | None = None     # values a window needs (default: n for rows, 1 for spans)
    expr: str | None = None
    tree: tuple | None = field(default=None, compare=False, repr=False)  # the parsed expression

    @property
    def inputs(self) -> list[str]:
        """The names it reads: a column / earlier feature, or an expression's names."""
        if self.op == "expr":
            return expression.names(self.tree)
        return [self.column] if self.column else []

    @property
    def windowed(self) -> bool:
        """Whether it reads other rows (lags and windows) rather than the current row only."""
        return OPS[self.op] in ("lag", "window", "span")

    @property
    def own_lookback(self) -> Lookback:
        if OPS[self.op] == "lag":
            return Lookback(rows=self.n)
        if self.span is not None:
            return Lookback(span=self.span)
        if self.n is not None:
            return Lookback(rows=self.n - 1)  # the window holds the current row
        return Lookback()

    @property
    def needed(self) -> int:
        """Non-missing values a window needs for a value (pandas' min_periods)."""
        if self.min_periods is not None:
            return self.min_periods
        return 1 if self.span is not None else (self.n or 1)

    def to_dict(self) -> dict:
        out = {"name": self.name}
        if self.op == "expr":
            out["expr"] = self.expr
            return out
        out["op"] = self.op
        for key in ("column", "n", "min_periods"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.span is not None:
            out["span"] = format_span(self.span)
        return out


def parse_feature(node, index: int, default_time: str | None) -> Feature:
    """One entry of `define` -> a Feature; a malformed entry is a UserError naming it."""
    require(isinstance(node, dict), f"features.define[{index}] is not a mapping: {node!r}")
    name = node.get("name")
    where = f"feature {name!r}" if name else f"features.define[{index}]"
    require(isinstance(name, str) and bool(_NAME.match(name)),
            f"{where}: needs a name of letters, digits and _ (not starting with a digit)")
    unknown = sorted(set(node) - KEYS)
    require(not unknown, f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    op = node.get("op") or ("expr" if "expr" in node else None)
    require(op in OPS, f"{where}: op {op!r} is not one of {', '.join(OPS)}")
    kind = OPS[op]
    n, span, column = node.get("n"), node.get("span"), node.get("column")
    if kind == "expr":
        text = node.get("expr")
        require(isinstance(text, str) and text.strip() != "", f"{where}: op expr needs an `expr`")
        require(n is None and span is None and column is None, f"{where}: an expr takes no column, n or span")
        try:
            tree = expression.parse(text)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        return Feature(name, "expr", expr=text, tree=tree)
    require(node.get("expr") is None, f"{where}: `expr` goes with op expr only")
    if kind == "time":
        column = column or default_time
        require(column is not None, f"{where}: {op} needs a timestamp: set its column or data.time_column")
        require(n is None and span is None, f"{where}: {op} takes no n or span")
        return Feature(name, op, column=column)
    if kind == "span":
        require(span is not None and n is None, f"{where}: count counts the rows of a span: give span, not n")
        require(column is None, f"{where}: count counts rows and takes no column")
    else:
        require(column is not None, f"{where}: {op} needs a column")
    if kind == "lag":
        require(span is None, f"{where}: {op} is against a row n rows back: give n, not span")
        require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, f"{where}: n must be an integer >= 1")
    if kind == "window":
        require((n is None) != (span is None), f"{where}: a {op} window takes either n (rows) or span (time)")
        if n is not None:
            require(isinstance(n, int) and not isinstance(n, bool) and n >= 1, f"{where}: n must be an integer >= 1")
    min_periods = node.get("min_periods")
    if min_periods is not None:
        require(kind == "window" and isinstance(min_periods, int) and min_periods >= 1
                and (n is None or min_periods <= n), f"{where}: min_periods must be an integer in 1..n of a window")
    return Feature(name, op, column=column, n=n, span=parse_span(span, where) if span is not None else None,
                   min_periods=min_periods)
