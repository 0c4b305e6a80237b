"""Scoring a model trained with window features: the model's own definition, computed over the slice
and the history before it, predictions for the slice only.

The definition is the model's (`Model.feature_set`, logged with it by the recipe), never today's
config: a model scores with the features it learned from. `lookback.read_window` reads the slice
and the history its windows reach; `FeatureSet.compute_slice` computes every feature as training
did and keeps the slice's rows. A feature whose window reaches before the history the table holds
(the first ticks of a table, a new listing, history deleted or filtered away) is written as missing,
never computed from a shorter window than training's: those rows are `short_rows`. A few of them
are scored and warned of; more than `scoring.max_short_fraction` of the slice (default 1 %) is an
error and nothing is written: the slice's lookback is not in the table.

Unlike a table without features, this input is not streamed: the slice and its lookback are held in
memory, then handed to the model in batches of scoring.batch_size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlrecipes.errors import UserError
from mlrecipes.features import FeatureSet
from mlrecipes.scoring.lookback import read_window


@dataclass
class FeatureReport:
    """What computing the slice's features found, for the run's metrics and its warning line."""

    lookback: str = ""
    history_rows: int = 0
    slice_rows: int = 0
    short_rows: int = 0
    short_by_feature: dict[str, int] = field(default_factory=dict)
    computed: bool = False

    def metrics(self) -> dict[str, float]:
        return {"short_rows": self.short_rows, "lookback_rows_read": self.history_rows,
                **{f"short.{name}.rows": rows for name, rows in self.short_by_feature.items()}}

    def summary(self) -> str:
        worst = ", ".join(f"{n} {r}" for n, r in sorted(self.short_by_feature.items(), key=lambda i: -i[1])[:4])
        return (f"{self.short_rows} of {self.slice_rows} rows ({self.short_rows / max(self.slice_rows, 1):.1%}) have "
                f"a feature whose window reaches before the history in the table ({worst})")


def featured_table(source, columns: list[str], model, filters: list, max_short: float | None,
                   report: FeatureReport):
    """The slice's rows with the model's features appended (None for an empty slice); `report` filled."""
    fs = FeatureSet.from_dict(model.feature_set)
    fs.validate(source.schema)  # a column a feature reads is gone, or changed type: one line
    report.lookback = str(fs.lookback())
    window = read_window(source, list(dict.fromkeys([*columns, *fs.columns_needed()])), fs, filters)
    if window is None:
        return None
    piece = fs.compute_slice(window.table, window.start)
    report.history_rows = window.table.num_rows - window.slice_rows
    report.slice_rows, report.short_rows = piece.table.num_rows, piece.short_rows
    report.short_by_feature, report.computed = dict(piece.short_by_feature), True
    refuse_short(report, fs, window, max_short)
    return piece.table


def refuse_short(report: FeatureReport, fs: FeatureSet, window, max_short: float | None) -> None:
    """One line, before anything is written, when more than `max_short` of the slice's rows have a
    feature whose window reaches before the history in the table (compute.features too)."""
    if max_short is not None and report.short_rows > max_short * report.slice_rows:
        raise UserError(f"the slice's lookback is not in the table: {report.summary()}; its features need "
                        f"{report.lookback} of each {fs.key or 'series'} before its ticks{_missing(fs, window)}; "
                        f"more than scoring.max_short_fraction {max_short:g}; the output is unchanged")


def _missing(fs: FeatureSet, window) -> str:
    """How many ticks the table lacks before the slice, per key short of them."""
    if not window.short_keys:
        return ""
    named = ", ".join(f"{k}: {n}" for k, n in sorted(window.short_keys.items(), key=lambda i: (i[1], str(i[0])))[:5])
    more = f" and {len(window.short_keys) - 5} more" if len(window.short_keys) > 5 else ""
    return (f", and the table holds fewer than {window.need} rows before {window.edge} for "
            f"{len(window.short_keys)} {fs.key or 'series'}{'s' if fs.key else ''} ({named}{more})")
