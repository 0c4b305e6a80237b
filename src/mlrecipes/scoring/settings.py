"""What the scoring config asks for, checked before a run exists: a value a user got wrong is
one `error:` line and exit 2, with no MLflow run created for it."""

from __future__ import annotations

from dataclasses import dataclass

from mlrecipes.data import is_image_set, tables
from mlrecipes.errors import require
from mlrecipes.scoring.model import resolve_model

MODES = ("overwrite-slice", "append", "overwrite")
FORMATS = ("auto", "parquet", "delta")


@dataclass(frozen=True)
class Settings:
    mode: str  # one of MODES
    format: str  # one of FORMATS
    batch_size: int
    max_unseen: float | None  # scoring.max_unseen_fraction
    output_uri: str
    images: bool  # the data group is an IDX image set (else a table)
    max_short: float | None = 0.01  # scoring.max_short_fraction: rows whose features reach before the history
    dask: bool = False  # compute=dask: partitions scored on a Dask cluster (compute.score)


def settings(cfg) -> Settings:
    """cfg.scoring (and the data group's `predictions`) checked; nothing is read or connected to."""
    from mlrecipes import compute  # stdlib only at import: no dask

    s = cfg.scoring
    mode = str(s.mode)
    require(mode in MODES, f"unknown scoring.mode '{mode}'; valid: {', '.join(MODES)}")
    batch_size = int(s.batch_size)
    require(batch_size > 0, f"scoring.batch_size must be > 0, got {batch_size}")
    max_unseen = s.get("max_unseen_fraction")
    require(max_unseen is None or (isinstance(max_unseen, int | float) and not isinstance(max_unseen, bool)
                                   and 0 <= max_unseen <= 1),
            f"scoring.max_unseen_fraction must be null or a number in [0, 1], got {max_unseen!r}")
    max_short = s.get("max_short_fraction", 0.01)
    require(max_short is None or (isinstance(max_short, int | float) and not isinstance(max_short, bool)
                                  and 0 <= max_short <= 1),
            f"scoring.max_short_fraction must be null or a number in [0, 1], got {max_short!r}")
    # -P output, else where the data group says its predictions go (conf/data/ticks.yaml: `predictions`).
    output = str(s.output or "").strip() or str(cfg.data.get("predictions") or "").strip()
    require(output not in ("", "???"),
            "scoring.output is required (-P output=...): a directory, an s3:// prefix or a Delta table")
    output_uri = tables.resolve_uri(output)
    fmt = str(s.format)
    require(fmt in FORMATS, f"unknown scoring.format '{fmt}'; valid: {', '.join(FORMATS)}")
    resolve_model(str(s.model), str(cfg.registry.model_name))  # the reference's form; load_model finds it
    images = is_image_set(cfg.data)
    dask = compute.on_dask(cfg)
    if images:
        require(not dask, "compute=dask scores tables; an IDX image set is scored in one process: compute=local")
        require(str(s.images) in ("test", "train"), f"scoring.images must be test or train, got {str(s.images)!r}")
        tables.require_no_window(cfg.data)  # conf/window: a table's time column
    return Settings(mode, fmt, batch_size, max_unseen, output_uri, images, max_short, dask)
