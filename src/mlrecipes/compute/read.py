"""A table read on the workers, partition by partition: the driver lists the files, never the rows.

The driver opens the table exactly as a single-process run does (`data.tables.open_table`: the
Parquet directory or the Delta version, the filters and the time window as one Arrow expression,
S3 with the same storage options and timeouts) and keeps only its list of files: the Hive or
Delta partitions the filter rules out are dropped there, from metadata. Each Dask partition is one
file (or one Parquet row group, `compute.partition_by: row_group`), which a worker scans with
the same expression and the same projection (numbers cast to float32 in the scan) as
`TableSource.read` — one rule for both engines, so both read the same rows.

Why not `dask.dataframe.read_parquet`: it would take the filters again in another language and
type Hive partition values itself (symbol=005930 would become the number 5930), and it cannot
read the files of one Delta version; pyarrow's scan through `dd.from_map` is what tables.py does.
Delta: the files of the version read, each with the partition values its log records; workers
open them with the table's own filesystem (local, or S3 with data.storage_options).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from mlrecipes.data import columns, tables
from mlrecipes.errors import UserError, one_line, require

PARTITION_BY = ("file", "row_group")


@dataclass(frozen=True)
class Scan:
    """What every partition's scan shares (sent once with the graph)."""

    describe: str
    format: pads.FileFormat
    filesystem: object  # a pyarrow filesystem: local or S3 (picklable, credentials included)
    schema: pa.Schema
    projection: dict  # {column: expression}: tables.py's projection (float32 casts)
    filter: pc.Expression | None


@dataclass(frozen=True)
class Piece:
    """One partition: a file, with the partition values its directory or Delta log holds."""

    path: str
    partition: pc.Expression | None = None
    row_groups: tuple[int, ...] | None = None


@dataclass
class Table:
    """A table opened for the cluster: the partitions to read and what the run logs about it."""

    source: tables.TableSource
    scan: Scan
    pieces: list[Piece]
    features: list[str]
    read: list[str]  # features plus target, time, split and report_by columns

    @property
    def lineage(self) -> dict[str, object]:
        """The same data.source.* params as a single-process run."""
        out: dict[str, object] = {"data.source.uri": self.source.uri, "data.source.kind": self.source.kind}
        if self.source.version is not None:
            out["data.source.version"] = self.source.version
        if self.source.filter_text:
            out["data.source.filter"] = self.source.filter_text
        return out

    def frame(self):
        """The rows as a lazy dask DataFrame, one partition per piece, read on the workers."""
        import dask.dataframe as dd

        require(bool(self.pieces), f"no rows in {self.source.describe()}: the filter leaves no file")
        return dd.from_map(read_piece, self.pieces, scan=self.scan, meta=empty(self.scan),
                           enforce_metadata=False, label="read-table")


def open_for_cluster(cfg, partition_by: str = "file") -> Table:
    """The data group's table (as `data.tables.open_table` opens it) split into pieces for the workers."""
    require(partition_by in PARTITION_BY,
            f"compute.partition_by must be one of {', '.join(PARTITION_BY)}, got {partition_by!r}")
    source = tables.open_table(cfg)
    require(source.kind != "csv" or partition_by == "file", "compute.partition_by=row_group is for Parquet and Delta")
    require(str(cfg.target) in source.columns,
            f"target column '{cfg.target}' not in {source.describe()}; columns: {', '.join(source.columns)}")
    features, read = columns.select_columns(cfg, source.columns, source.schema)
    filesystem, root = _filesystem(source, dict(cfg.get("storage_options") or {}))
    scan = Scan(source.describe(), source.dataset.format, filesystem, source.schema,
                columns.projection(read, features, source.schema), source.filter)
    return Table(source, scan, pieces(source, root, partition_by), features, read)


def _filesystem(source: tables.TableSource, options: dict):
    """(filesystem the workers open, the root a Delta file's relative path hangs from)."""
    from pyarrow import fs

    filesystem, path = tables.filesystem_for(source.uri, options)
    if source.kind != "delta":
        # A Parquet / CSV dataset's own filesystem: local, or the S3 one open_table built.
        return source.dataset.filesystem, ""
    return filesystem or fs.LocalFileSystem(), path.rstrip("/")


def pieces(source: tables.TableSource, root: str, partition_by: str = "file") -> list[Piece]:
    """The files the filter may keep (partitions pruned from metadata), in the dataset's order."""
    try:
        fragments = list(source.dataset.get_fragments(filter=source.filter))
        if partition_by == "row_group":
            # Reads each file's footer on the driver: the price of spreading few large files.
            fragments = [g for f in fragments for g in f.split_by_row_group(filter=source.filter)]
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot list {source.describe()}: {one_line(str(exc))}") from None
    out = []
    for fragment in fragments:
        path = f"{root}/{fragment.path}" if source.kind == "delta" else fragment.path
        groups = tuple(g.id for g in fragment.row_groups) if partition_by == "row_group" else None
        out.append(Piece(path, fragment.partition_expression, groups))
    return out


def read_piece(piece: Piece, scan: Scan):
    """One partition's rows as pandas (runs on a worker): tables.py's scan of one file."""
    try:
        kwargs = {"partition_expression": piece.partition}
        if piece.row_groups is not None:
            kwargs["row_groups"] = list(piece.row_groups)
        fragment = scan.format.make_fragment(piece.path, scan.filesystem, **kwargs)
        arrow = fragment.to_table(schema=scan.schema, columns=scan.projection, filter=scan.filter)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        raise UserError(f"cannot read {scan.describe} ({piece.path}): {one_line(str(exc))}") from None
    return to_pandas(arrow)


def to_pandas(arrow: pa.Table):
    """Every partition in the same dtypes: dictionary columns as their values (one partition's
    dictionary is no category list: `categories` fixes those from the training rows), dates as
    datetime64 (a time column orders and splits as numbers)."""
    decoded = [col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col for col in arrow.columns]
    return pa.table(decoded, names=arrow.column_names).to_pandas(date_as_object=False, self_destruct=True)


def empty(scan: Scan):
    """A zero-row frame with every partition's columns and dtypes (dask's `meta`)."""
    fields = []
    for name, expression in scan.projection.items():
        kind = scan.schema.field(name).type
        if expression.equals(pc.field(name).cast(pa.float32(), safe=False)):
            kind = pa.float32()
        fields.append(pa.field(name, kind))
    return to_pandas(pa.schema(fields).empty_table())
