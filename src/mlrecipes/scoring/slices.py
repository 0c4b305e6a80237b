"""The slice a scoring run writes (the data group's filters plus the window), as the output
knows it: a Delta predicate for `overwrite-slice`, an id naming a Parquet output's files."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from mlrecipes.data import tables


def sql_predicate(conditions: list[list], schema: pa.Schema) -> str | None:
    """The slice as a Delta (DataFusion SQL) predicate: what `overwrite-slice` replaces."""
    def literal(value, kind):
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            return str(pa.array([str(value)]).cast(kind)[0].as_py())
        return "'" + str(value).replace("'", "''") + "'"

    terms = []
    for column, op, value in conditions:
        kind = tables.value_type(schema.field(column).type)
        op = tables.OPS[str(op)]
        if op in ("in", "not in"):
            values = value if isinstance(value, list | tuple) else [value]
            terms.append(f'"{column}" {op.upper()} ({", ".join(literal(v, kind) for v in values)})')
        else:
            terms.append(f'"{column}" {op} {literal(value, kind)}')
    return " AND ".join(terms) or None


def slice_id(filter_text: str) -> str:
    """Names the files of one slice in a Parquet output: the same filter, the same id."""
    return "s" + hashlib.sha256((filter_text or "<all rows>").encode()).hexdigest()[:12]
