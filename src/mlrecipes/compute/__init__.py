"""Where a run computes (the `compute` config group, conf/compute): one process (`local`, the
default) or a Dask cluster (`dask`). On a cluster the same recipe holds, only spread out:

- `cluster`: the client of a run, from config (an embedded LocalCluster, a scheduler's address, or
  any cluster class named by `_target_`); failures to reach or start one are one line;
- `packages`: what the workers must import (the project's packages) and the driver's code shipped to them;
- `read`: a table read on the workers, partition by partition, with tables.py's own scan
  (the same pushed-down filters, columns, Delta version and storage options);
- `splits`: the time, random and column splits computed on the cluster (splits.py's rules);
- `categories`: string features typed by the training rows' values, the same on every worker;
- `metrics`: test metrics from per-partition partial sums, plots from a bounded sample.

Nothing here is imported by a single-process run: `dask` is only needed with `compute=dask`.
"""

from __future__ import annotations

KINDS = ("local", "dask")


def kind_of(cfg) -> str:
    """`compute.kind` of a composed config: `local` when the config has no compute group."""
    from mlrecipes.errors import require

    node = cfg.get("compute") if cfg is not None else None
    kind = str((node or {}).get("kind") or "local")
    require(kind in KINDS, f"unknown compute.kind '{kind}'; valid: {', '.join(KINDS)}")
    return kind


def on_dask(cfg) -> bool:
    """Whether the run computes on a Dask cluster (`-P compute=dask`)."""
    return kind_of(cfg) == "dask"
