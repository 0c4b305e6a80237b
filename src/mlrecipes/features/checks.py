"""Does a feature definition fit a table? Every mismatch a user can make is one readable line."""

from __future__ import annotations

import pyarrow as pa

from ..errors import UserError
from .spec import OPS, Feature


def numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def temporal(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind)


def _columns(schema: pa.Schema) -> str:
    names = schema.names
    return ", ".join(names[:40]) + (f", ... ({len(names)} columns)" if len(names) > 40 else "")


def check(features: list[Feature], key: str | None, order: str | None, schema: pa.Schema) -> None:
    """Raise a UserError for the first feature (or key / order) the table cannot serve."""
    names = schema.names
    if key is not None and key not in names:
        raise UserError(f"features.key {key!r} is not a column of the table (columns: {_columns(schema)})")
    windowed = [f for f in features if f.windowed]
    if order is None and windowed:
        raise UserError(f"feature {windowed[0].name!r} needs a time order: set data.time_column or features.order")
    if order is not None and order not in names:
        raise UserError(f"features.order {order!r} is not a column of the table (columns: {_columns(schema)})")
    if order is not None and not (temporal(schema.field(order).type) or pa.types.is_integer(schema.field(order).type)):
        raise UserError(f"features.order {order!r} has type {schema.field(order).type}: the order must be a "
                        "timestamp, a date or an integer sequence")
    position = {}
    for index, feature in enumerate(features):
        if feature.name in position:
            raise UserError(f"two features are named {feature.name!r}: give each feature its own name")
        if feature.name in names:
            raise UserError(f"feature {feature.name!r} has the name of a column of the table: rename the feature")
        position[feature.name] = index
    later = {f.name for f in features}
    made: set[str] = set()
    for feature in features:
        for name in feature.inputs:
            if name in made or name in names:
                continue
            if name in later:
                raise UserError(f"feature {feature.name!r} refers to {name!r}, a feature defined after it: "
                                "define features before the features that use them")
            raise UserError(f"feature {feature.name!r} reads column {name!r}, which the table lacks "
                            f"(columns: {_columns(schema)})")
        kind = OPS[feature.op]
        source = feature.column
        if kind in ("lag", "window") and source in names and source not in made:
            if not numeric(schema.field(source).type):
                raise UserError(f"feature {feature.name!r}: {feature.op} needs a numeric column, and {source!r} "
                                f"has type {schema.field(source).type}")
        if kind == "expr":
            for name in feature.inputs:
                if name in names and name not in made and not numeric(schema.field(name).type):
                    raise UserError(f"feature {feature.name!r}: the expression reads {name!r}, which has type "
                                    f"{schema.field(name).type}, not a number")
        if kind == "time":
            if source in made or not temporal(schema.field(source).type):
                kind_of = "a feature" if source in made else f"type {schema.field(source).type}"
                raise UserError(f"feature {feature.name!r}: {feature.op} needs a timestamp column, and "
                                f"{source!r} is {kind_of}")
        if feature.span is not None and not temporal(schema.field(order).type):
            raise UserError(f"feature {feature.name!r}: a time-span window needs a time column as the order, and "
                            f"{order!r} has type {schema.field(order).type}: use n (rows) or order by a timestamp")
        made.add(feature.name)
