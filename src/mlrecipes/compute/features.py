"""Window features on the cluster: one definition, the single-process code, per key on the workers.

`with_features(client, df, fs)` takes the table as the cluster read it (compute/read.py, before any
row is dropped or split) and returns it, lazily, with the features appended, computed by the same
function a single process runs (`data.ingest.with_features`: Polars, per key in time order, no
look-ahead; rows without a time have none). Not a second implementation: each key's rows are
brought together, then handed to that function.

1. every row is tagged with its place in the read (partition number, position): the order a single
   process reads the table in, which ticks of one timestamp keep (a tie never sees a later tick);
2. the columns the features read are shuffled on the key (`shuffle(on=key)`: Dask's P2P shuffle
   under a distributed client), so every key's whole history lands in one partition (as many
   partitions as the read, more where the keys hashed to one would crowd a worker);
3. each partition, put back in read order, goes through `data.ingest.with_features` on a worker;
4. the features go back to the read's partitions and row order (`set_index` on the tag with the
   read's own boundaries: a second shuffle, of the feature columns only), and join the table there.
   Everything after (data.limit's first rows, the splits, the dataset digest) sees the read's
   partitions, with or without features.

The limit: **a key's whole history must fit one worker** (the rows of one symbol, the columns its
features read, several times over while Polars computes). Tick histories per symbol usually do; a
key that does not is refused before the shuffle, in one line naming it, its rows, the memory it
would take and the workers' limit (a worker past its limit would be restarted by its nanny, over
and over, until Dask gives up). A definition without a key is one history: the whole table on one
worker. Ways out: workers with more memory, a narrower `data.filters` / `data.window`, or a finer key.
"""

from __future__ import annotations

import numpy as np

from mlrecipes.errors import UserError, require

ROW = "__mlrecipes_read_row"  # partition number << SHIFT | position in it: the read's order
SHIFT = 40
# Bytes a worker holds per byte of a key's input columns, and per feature value, while computing
# (an Arrow copy, the sorted frame, the layers, the result). Measured with ticks.yaml on 2 M ticks of
# one symbol (72 MiB of inputs): 546 MiB above the worker's RSS at the peak; this says 839 MiB.
INPUT_COPIES, FEATURE_COPIES = 4, 3
HEADROOM = 0.5  # of a worker's memory limit: the partition's other keys and the worker's own use


def reading(table, fs):
    """`table` (compute.read.Table) also reading the columns `fs` reads, at their own precision, as
    data/ingest.py reads them (a return of float32 prices is not the return of the prices)."""
    from dataclasses import replace

    from mlrecipes.data import columns

    needed = fs.columns_needed()
    if not needed:
        return table
    read = list(dict.fromkeys([*table.read, *needed]))
    projection = columns.projection(read, table.features, table.source.schema, exact=needed)
    return replace(table, scan=replace(table.scan, projection=projection), read=read)


def with_features(client, df, fs):
    """`df` (a dask DataFrame of the table as read) with `fs`'s features appended as float32 columns
    (as a single process types them), its partitions and row order unchanged."""
    import dask.dataframe as dd

    if not fs:
        return df
    n = df.npartitions
    tagged = df.map_partitions(_tagged, meta=df._meta.assign(**{ROW: np.int64(0)}))
    inputs = tagged[[*fs.columns_needed(), ROW]]
    parts = partitions(client, inputs, fs)
    grouped = inputs.shuffle(on=fs.key, npartitions=parts) if fs.key else inputs.repartition(npartitions=1)
    meta = _features_meta(fs.names)
    computed = grouped.map_partitions(_computed, fs.to_dict(), meta=meta.assign(**{ROW: np.int64(0)}),
                                      enforce_metadata=False)
    divisions = [i << SHIFT for i in range(n)] + [(n << SHIFT) - 1]
    back = computed.set_index(ROW, divisions=divisions)
    return dd.map_partitions(_joined, df, back, fs.names, meta=df._meta.assign(**meta), align_dataframes=False,
                             enforce_metadata=False)


def _tagged(frame, partition_info=None):
    number = (partition_info or {}).get("number", 0)
    return frame.assign(**{ROW: (np.int64(number) << SHIFT) + np.arange(len(frame), dtype=np.int64)})


def _features_meta(names: list[str]):
    import pandas as pd

    return pd.DataFrame({name: pd.Series([], dtype="float32") for name in names})


def _computed(frame, definition: dict):
    """One partition's keys (whole) through the single-process function, in the read's order."""
    import pandas as pd
    import pyarrow as pa

    from mlrecipes.data import columns, ingest
    from mlrecipes.features import FeatureSet

    fs = FeatureSet.from_dict(definition)
    if not len(frame):
        return _features_meta(fs.names).assign(**{ROW: np.zeros(0, dtype=np.int64)})
    frame = frame.sort_values(ROW, kind="stable")  # a shuffle promises no order of its rows
    arrow = pa.Table.from_pandas(frame.drop(columns=ROW), preserve_index=False)
    done = ingest.with_features(arrow, fs)
    return pd.DataFrame({**{name: columns.feature(done.column(name)) for name in fs.names},
                         ROW: frame[ROW].to_numpy()})


def _joined(frame, computed, names: list[str]):
    require(len(frame) == len(computed), "features: a partition came back with another row count")
    return frame.assign(**{name: computed[name].to_numpy() for name in names})


def _key_sizes(frame, key: str | None):
    """Per key of this partition: its rows and the bytes of its input columns."""
    import pandas as pd

    per_row = frame.memory_usage(deep=True, index=False).sum() / max(len(frame), 1)
    if key is None:
        rows = pd.Series([len(frame)], index=pd.Index(["the table"], name="key"))
    else:
        rows = frame.groupby(key, dropna=False, observed=True, sort=False).size().rename_axis("key")
    return pd.DataFrame({"rows": rows.astype("int64"), "bytes": (rows * per_row).astype("float64")})


def memory_to_compute(sizes, fs):
    """Per key, the bytes a worker holds to compute its features, from `_key_sizes`' rows and bytes."""
    return sizes["bytes"] * INPUT_COPIES + sizes["rows"] * 8.0 * len(fs) * FEATURE_COPIES


def partitions(client, inputs, fs) -> int:
    """How many partitions the shuffle makes: the read's, or more where the keys' memory to compute
    would crowd a worker (a partition holds the keys that hash to it, computed at once). A key whose
    history would not fit one worker is refused here, in one line, before the shuffle."""
    import math

    import pandas as pd

    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    limit = min((m for m in limits if m), default=0)
    if not limit:  # workers without a memory limit: nothing to check against
        return inputs.npartitions
    meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"), "bytes": pd.Series([], dtype="float64")},
                        index=pd.Index([], name="key", dtype=inputs._meta[fs.key].dtype if fs.key else object))
    sizes = inputs.drop(columns=ROW).map_partitions(_key_sizes, fs.key, meta=meta)
    totals = sizes.reset_index().groupby("key", dropna=False).sum().compute()
    need = memory_to_compute(totals, fs)
    budget = HEADROOM * limit
    if need.empty or need.max() <= budget:
        # twice the even share: hashing spreads keys unevenly
        return max(inputs.npartitions, math.ceil(2 * float(need.sum()) / budget))
    key = need.idxmax()
    mib = 1 << 20
    what = "the table (features.key is null: one history)" if fs.key is None else f"{fs.key}={key!r}"
    raise UserError(f"window features on the cluster: {what} has {int(totals['rows'][key])} rows, about "
                    f"{need[key] / mib:.0f} MiB to compute on one worker, over half a worker's memory limit "
                    f"({limit / mib:.0f} MiB): a key's whole history must fit one worker; give the workers more "
                    "memory, read less of the table (data.filters, data.window) or use a finer key")


# ---------------------------------------------------------------- scoring a slice (compute.score)


def featured_slice(client, sliced, model, pieces: list, filesystem, filters: list, max_short: float | None):
    """The slice of `sliced` (scoring.inputs.TableSlice; `pieces`: its files, compute.read.pieces) with
    the model's window features, computed on the workers as scoring.windowed computes them in one
    process: the slice read on the workers; the history before it read by scoring.lookback's rule
    (the slice's extent found on the workers, the history read on the driver: minutes and rows per
    key); both shuffled on the key, each partition through FeatureSet.compute_slice in read order
    (history first). Returns (futures of the slice's rows with the features as Arrow tables, one per
    shuffled partition, in the read's types; scoring.windowed.FeatureReport). Unlike a slice without
    features, which is scored file by file, the featured slice is held on the workers until scored;
    its float columns come back through pandas, NaN and null both as missing (as the model reads them)."""
    import dask
    import dask.dataframe as dd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlrecipes.compute import read
    from mlrecipes.features import FeatureSet
    from mlrecipes.scoring import lookback
    from mlrecipes.scoring.windowed import FeatureReport, refuse_short

    fs, source = FeatureSet.from_dict(model.feature_set), sliced.source
    fs.validate(source.schema)  # a column a feature reads is gone, or changed type: one line
    report = FeatureReport(lookback=str(fs.lookback()))
    columns = list(dict.fromkeys([*sliced.passthrough, *model.raw_features,
                                  *(c for c in (sliced.target, sliced.group) if c), *fs.columns_needed()]))
    scan = read.Scan(source.describe(), source.dataset.format, filesystem, source.schema,
                     {c: pc.field(c) for c in columns}, source.filter)
    if not pieces:
        return [], report
    frame = client.persist(dd.from_map(read.read_piece, pieces, scan=scan, meta=read.empty(scan),
                                       enforce_metadata=False, label="read-slice"))
    found = [frame[fs.order].min(), frame[fs.order].max(), frame.shape[0]]
    low, high, rows, *keys = dask.compute(*found, *([frame[fs.key].dropna().unique()] if fs.key else []))
    if not rows:
        return [], report
    kind = source.schema.field(fs.order).type
    start, end = pa.array([low, high]).cast(kind.value_type if pa.types.is_dictionary(kind) else kind).to_pylist()
    extent = lookback.Extent(start, end, int(rows), list(keys[0]) if keys else [None])
    window = lookback.history(source, columns, fs, filters, extent)
    if window.table is not None and window.table.num_rows:
        frame = dd.concat([dd.from_pandas(read.to_pandas(window.table), npartitions=1), frame])
    tagged = frame.map_partitions(_tagged, meta=frame._meta.assign(**{ROW: np.int64(0)}))
    grouped = (tagged.shuffle(on=fs.key, npartitions=partitions(client, tagged, fs)) if fs.key
               else tagged.repartition(npartitions=1))
    types = pa.schema([*(scan.schema.field(c) for c in columns), *(pa.field(n, pa.float64()) for n in fs.names)])
    slices = client.compute([dask.delayed(_slice_part)(part, fs.to_dict(), start, types)
                             for part in grouped.to_delayed()])
    counts = client.gather(client.map(_counts, slices))
    report.history_rows = window.table.num_rows if window.table is not None else 0
    report.slice_rows, report.short_rows = sum(c[0] for c in counts), sum(c[1] for c in counts)
    for _, _, by in counts:
        for name, n in by.items():
            report.short_by_feature[name] = report.short_by_feature.get(name, 0) + n
    report.computed = True
    refuse_short(report, fs, window, max_short)
    return client.map(_table, slices), report


def _slice_part(frame, definition: dict, start, types):
    """One shuffled partition's slice rows with their features (FeatureSet.compute_slice), in `types`."""
    import dataclasses

    import pyarrow as pa

    from mlrecipes.features import FeatureSet, Slice

    if not len(frame):
        return Slice(types.empty_table())
    frame = frame.sort_values(ROW, kind="stable")  # a shuffle promises no order of its rows
    piece = FeatureSet.from_dict(definition).compute_slice(
        pa.Table.from_pandas(frame.drop(columns=ROW), preserve_index=False), start)
    return dataclasses.replace(piece, table=piece.table.cast(types))


def _counts(piece) -> tuple[int, int, dict]:
    return piece.table.num_rows, piece.short_rows, dict(piece.short_by_feature)


def _table(piece):
    return piece.table


class Scoring:
    """A scoring run's window features on the cluster, for compute.score: set up before the cluster
    is reached (`for_scoring`), computed on it (`pieces`: the slice's partitions with their features,
    in place of its files) and reported after (`report`: scoring.run.report's features)."""

    def __init__(self, cfg, model, sliced, max_short: float | None):
        from mlrecipes.compute import read
        from mlrecipes.data import tables

        self.model, self.sliced, self.max_short = model, sliced, max_short
        self.filesystem, _ = read._filesystem(sliced.source, dict(cfg.data.get("storage_options") or {}))
        self.filters = tables.as_conditions(cfg.data.get("filters"))  # the history keeps training's filters
        self.report = None

    def pieces(self, client, pieces: list) -> list:
        futures, self.report = featured_slice(client, self.sliced, self.model, pieces, self.filesystem, self.filters,
                                              self.max_short)
        return futures


def for_scoring(cfg, model, sliced, settings) -> Scoring | None:
    """How a scoring run on the cluster computes `model`'s window features; None for a model without."""
    return Scoring(cfg, model, sliced, settings.max_short) if model.feature_set else None
