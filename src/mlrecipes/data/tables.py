"""Lakehouse tables: one reader for Parquet (file or Hive-partitioned directory), Delta Lake and CSV,
local or on S3-compatible storage, built on `pyarrow.dataset` and `deltalake`.

Only the columns a run needs are read, and the row filter is pushed down to the scan, so a
partition filter skips whole directories and Parquet row-group statistics skip row groups.
Filters are data, never code: a list of `[column, op, value]` (all must hold), e.g.
`data.filters=[[date,ge,2026-01-02],[symbol,in,[005930,000660]]]`; each value is cast to the
column's type, so a timestamp column compares with `2026-01-02T10:00:00`.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from mlrecipes.errors import UserError, one_line, require, see

KINDS = ("parquet", "delta", "csv")
# Word forms travel through Hydra overrides and the Airflow form unquoted; symbols need quotes.
OPS = {"eq": "==", "==": "==", "ne": "!=", "!=": "!=", "lt": "<", "<": "<", "le": "<=", "<=": "<=",
       "gt": ">", ">": ">", "ge": ">=", ">=": ">=", "in": "in", "not_in": "not in", "not in": "not in"}
# S3 calls give up in bounded time: an endpoint that does not answer fails the run in seconds,
# not after the AWS SDK's default of minutes of retries.
S3_CONNECT_TIMEOUT_S = 3
S3_REQUEST_TIMEOUT_S = 10
S3_MAX_ATTEMPTS = 2
NOT_FOUND = see("a-table-or-data-file-is-not-found")


@dataclass
class TableSource:
    """An opened table: the dataset to scan plus what a run needs to name and reproduce it."""

    kind: str
    uri: str
    dataset: pads.Dataset
    version: int | None = None  # Delta: the version actually read
    filter: pc.Expression | None = None
    filter_text: str = ""
    partition_columns: tuple[str, ...] = ()  # Hive directories / Delta partitions, outermost first

    @property
    def schema(self) -> pa.Schema:
        return self.dataset.schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def describe(self) -> str:
        text = f"{self.kind} {self.uri}"
        if self.version is not None:
            text += f" version {self.version}"
        return text + (f" where {self.filter_text}" if self.filter_text else "")

    def read(self, columns: list[str]) -> pa.Table:
        """The filtered rows of `columns`, as one Arrow table. One file read ahead, not Arrow's four:
        their decoded batches (float64 before the cast to float32) held ~270 MB more at the peak of a
        5 M-row, 20-file read (1,136 against 868 MB; the table itself is 527 MB), at no measured cost
        in time on local files (bench/results/tables.json's ingest_seconds)."""
        try:
            return self.dataset.to_table(columns=columns, filter=self.filter, fragment_readahead=1, batch_readahead=4)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise UserError(f"cannot read {self.describe()}: incompatible files or types "
                            f"({one_line(str(exc))})") from None
        except OSError as exc:
            raise UserError(f"cannot read {self.describe()}: {one_line(str(exc))}") from None

    def batches(self, columns: list[str], batch_size: int = 65_536):
        """Record batches of the filtered rows: bounded memory for tables larger than RAM."""
        try:
            yield from self.dataset.to_batches(columns=columns, filter=self.filter, batch_size=batch_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
            raise UserError(f"cannot read {self.describe()}: {one_line(str(exc))}") from None


def open_table(cfg) -> TableSource:
    """Open the table a data group describes (kind, path, version, filters, storage_options)."""
    kind = str(cfg.kind)
    require(kind in KINDS, f"unknown table kind '{kind}'; valid: {', '.join(KINDS)}")
    path = cfg.get("path")
    require(path not in (None, "", "???"), f"data.path is required for data={kind}")
    uri = resolve_uri(str(path))
    options = dict(cfg.get("storage_options") or {})
    if kind == "delta":
        source = _open_delta(uri, cfg.get("version"), options)
    else:
        require(cfg.get("version") is None, f"data.version is for Delta tables; {kind} has no versions")
        source = _open_files(kind, uri, options)
    source.filter, source.filter_text = filter_expression(conditions(cfg, source.schema), source.schema)
    return source


def resolve_uri(path: str) -> str:
    """s3:// URIs as given; local paths absolute (relative to where the user ran the command)."""
    if "://" in path:
        require(path.startswith("s3://") or path.startswith("file://"),
                f"unsupported URI {path!r}: use a local path or s3://bucket/key")
        return path
    return os.path.abspath(os.path.expanduser(path))


def hive_names(files: list[str], base: str) -> list[str]:
    """The `key=value` folder names between `base` and the first file. Not the dataset's discovered
    partitioning: for a flat directory (no such folders) pyarrow reports every column of the files
    as its hive schema, and reading them all as partition strings fails."""
    if not files:
        return []
    folders = posixpath.relpath(files[0], base.rstrip("/") or "/").split("/")[:-1]
    return [folder.split("=", 1)[0] for folder in folders if "=" in folder]


def _open_files(kind: str, uri: str, options: dict) -> TableSource:
    from pyarrow import fs

    filesystem, path = filesystem_for(uri, options)
    fmt = "parquet" if kind == "parquet" else pads.CsvFileFormat()
    try:
        info = (filesystem or fs.LocalFileSystem()).get_file_info(path)
        require(info.type != fs.FileType.NotFound, f"data not found: {uri}" + NOT_FOUND)
        directory = info.type == fs.FileType.Directory
        dataset = pads.dataset(path, format=fmt, filesystem=filesystem,
                               partitioning="hive" if directory else None)
        names = hive_names(dataset.files, path) if directory else []
        if names:
            # Partition values stay strings: "symbol=005930" is a ticker, not the number 5930.
            # Same files, no second listing (on S3 a listing is the slow part).
            strings = pads.partitioning(pa.schema([(n, pa.string()) for n in names]), flavor="hive")
            dataset = pads.dataset(dataset.files, format=fmt, filesystem=filesystem,
                                   partitioning=strings, partition_base_dir=path)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UserError(f"cannot read {kind} {uri}: {one_line(str(exc))}") from None
    except OSError as exc:  # S3: endpoint unreachable, access denied, no such bucket
        raise UserError(f"cannot read {uri}: {one_line(str(exc))}") from None
    require(bool(dataset.files), f"data not found: no {kind} files under {uri}" + NOT_FOUND)
    return TableSource(kind, uri, dataset, partition_columns=tuple(names))


def _open_delta(uri: str, version, options: dict) -> TableSource:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    if "://" not in uri:
        require(os.path.isdir(uri), f"data not found: {uri}" + NOT_FOUND)
    try:
        table = DeltaTable(uri, version=None if version is None else int(version),
                           storage_options=delta_storage_options(uri, options))
        dataset = table.to_pyarrow_dataset()
    except TableNotFoundError:
        raise UserError(f"no Delta table at {uri}" + NOT_FOUND) from None
    except (DeltaError, OSError) as exc:
        text = one_line(str(exc))
        if version is not None and "version" in text.lower():
            raise UserError(f"Delta table {uri} has no version {version}: {text}") from None
        raise UserError(f"cannot read Delta table {uri}: {text}") from None
    return TableSource("delta", uri, dataset, version=table.version(),
                       partition_columns=tuple(table.metadata().partition_columns))


# ---------------------------------------------------------------- object storage


def s3_settings(options: dict) -> dict[str, str | None]:
    """Endpoint, region and credentials: `data.storage_options` first, then the standard AWS variables."""
    env = os.environ.get

    def pick(key: str, *variables: str):
        value = options.get(key)
        return str(value) if value not in (None, "") else next((env(v) for v in variables if env(v)), None)

    return {
        "endpoint_url": pick("endpoint_url", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        "region": pick("region", "AWS_REGION", "AWS_DEFAULT_REGION"),
        "access_key_id": pick("access_key_id", "AWS_ACCESS_KEY_ID"),
        "secret_access_key": pick("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        "session_token": pick("session_token", "AWS_SESSION_TOKEN"),
    }


def filesystem_for(uri: str, options: dict):
    """(pyarrow filesystem or None for local, path within it)."""
    if uri.startswith("file://"):
        return None, uri.removeprefix("file://")
    if not uri.startswith("s3://"):
        return None, uri
    from pyarrow import fs

    s3 = s3_settings(options)
    endpoint = s3["endpoint_url"]
    scheme = "https"
    if endpoint and "://" in endpoint:
        scheme, endpoint = endpoint.split("://", 1)
    filesystem = fs.S3FileSystem(
        access_key=s3["access_key_id"], secret_key=s3["secret_access_key"], session_token=s3["session_token"],
        region=s3["region"] or "us-east-1", endpoint_override=endpoint, scheme=scheme,
        connect_timeout=S3_CONNECT_TIMEOUT_S, request_timeout=S3_REQUEST_TIMEOUT_S,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
    )
    return filesystem, uri.removeprefix("s3://")


def delta_storage_options(uri: str, options: dict) -> dict[str, str] | None:
    """deltalake's (object_store's) spelling of the same settings, with the same bounded timeouts."""
    if not uri.startswith("s3://"):
        return None
    s3 = s3_settings(options)
    out = {
        "AWS_ENDPOINT_URL": s3["endpoint_url"], "AWS_REGION": s3["region"] or "us-east-1",
        "AWS_ACCESS_KEY_ID": s3["access_key_id"], "AWS_SECRET_ACCESS_KEY": s3["secret_access_key"],
        "AWS_SESSION_TOKEN": s3["session_token"],
        "timeout": f"{S3_REQUEST_TIMEOUT_S}s", "connect_timeout": f"{S3_CONNECT_TIMEOUT_S}s",
        "max_retries": str(S3_MAX_ATTEMPTS), "retry_timeout": f"{S3_REQUEST_TIMEOUT_S}s",
    }
    if (s3["endpoint_url"] or "").startswith("http://"):
        out["AWS_ALLOW_HTTP"] = "true"
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------- filters and the time window


def conditions(cfg, schema: pa.Schema) -> list[list]:
    """The rows a data group selects: its `filters`, then the run's time window (conf/window). The
    one place the window is read: the rows training reads, the slice scoring scores."""
    window = window_of(cfg)
    return [*as_conditions(cfg.get("filters")),
            *interval_conditions(window.get("interval") or "", window.get("column"), schema,
                                 length=window.get("length") or None)]


WINDOW_KEYS = ("interval", "column", "length")


def window_of(cfg) -> dict:
    """The time window (conf/window: column, interval, length) of the config this data group was
    composed into, the `window` node beside it; {} for a data group on its own (no window)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return {}
    try:
        window = OmegaConf.select(cfg, "..window", default=None)  # relative: the data group's parent
    except OmegaConfBaseException:  # the data group is the root: composed on its own
        return {}
    return OmegaConf.to_container(window, resolve=True) if isinstance(window, DictConfig) else {}


def require_no_window(cfg) -> None:
    """For a data group without a time column (an IDX image set): a window that is set is an error."""
    window = window_of(cfg)
    given = [k for k in WINDOW_KEYS if window.get(k)]
    require(not given, f"window.{given[0] if given else ''} is for tables ({', '.join(KINDS)}); "
                       f"data={cfg.get('name')} has no time column")


def as_conditions(spec) -> list[list]:
    """`data.filters` as a list of [column, op, value] (one condition may come without the outer list)."""
    from omegaconf import OmegaConf

    if spec in (None, "", []):
        return []
    spec = OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec
    require(isinstance(spec, list | tuple), f"data.filters must be a list of [column, op, value], got {spec!r}")
    if len(spec) == 3 and isinstance(spec[0], str) and str(spec[1]) in OPS:
        spec = [spec]
    return [list(c) if isinstance(c, list | tuple) else c for c in spec]


LENGTH_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def interval_conditions(interval: str, column: str | None, schema: pa.Schema, length: str | None = None) -> list[list]:
    """`START/END` on `column`: [[column, ge, START], [column, lt, END]] in the column's own terms
    (window.interval on window.column).

    `length` (30d, 12h, 4w: window.length) makes START = END - length: a weekly retraining on the
    last 30 days gets Airflow's data interval as `interval` and keeps only its END. Without an
    interval, END is now (a date column: today's midnight, UTC)."""
    if not interval and not length:
        return []
    require(bool(column), f"window.{'interval' if interval else 'length'} needs window.column "
                          "(the time or date column it filters)")
    require(column in schema.names, f"window.column: unknown column '{column}'; "
                                    f"columns: {', '.join(schema.names)}")
    kind = value_type(schema.field(column).type)
    dates = not pa.types.is_timestamp(kind)
    if interval:
        start_text, sep, end_text = str(interval).partition("/")
        try:
            start, end = (datetime.fromisoformat(t.strip()) for t in (start_text, end_text))
        except ValueError:
            raise UserError(f"window.interval {interval!r}: expected START/END in ISO 8601, "
                            "e.g. 2026-01-03T00:00:00+00:00/2026-01-04T00:00:00+00:00") from None
        require(bool(sep) and start < end, f"window.interval {interval!r}: START must be before END")
        start, end = _utc(start), _utc(end)
    else:
        end = datetime.now(UTC).replace(tzinfo=None)
        end = end.replace(hour=0, minute=0, second=0, microsecond=0) if dates else end
    if length:
        match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", str(length))
        require(match is not None and int(match[1]) > 0,
                f"window.length {length!r}: expected a length such as 30d, 12h, 90m or 4w")
        start = end - timedelta(**{LENGTH_UNITS[match[2]]: int(match[1])})
    if not dates:
        return [[column, "ge", start.isoformat()], [column, "lt", end.isoformat()]]
    midnight = all(t.time() == datetime.min.time() for t in (start, end))
    require(midnight, f"window.{'interval' if interval else 'length'} {interval or length!r}: '{column}' holds "
                      "dates, so START and END must be midnights")
    return [[column, "ge", start.date().isoformat()], [column, "lt", end.date().isoformat()]]


def filter_expression(spec: list, schema: pa.Schema) -> tuple[pc.Expression | None, str]:
    """`[[column, op, value], ...]` (all must hold; `conditions` builds it) -> an Arrow expression
    and a readable text."""
    if not spec:
        return None, ""
    expression, texts = None, []
    for condition in spec:
        require(isinstance(condition, list | tuple) and len(condition) == 3,
                f"data.filters: expected [column, op, value], got {condition!r}")
        column, op, value = str(condition[0]), str(condition[1]), condition[2]
        require(column in schema.names,
                f"data.filters: unknown column '{column}'; columns: {', '.join(schema.names)}")
        require(op in OPS, f"data.filters: unknown operator '{op}'; valid: {', '.join(OPS)}")
        op = OPS[op]
        kind = value_type(schema.field(column).type)
        field = pc.field(column)
        if op in ("in", "not in"):
            values = list(value) if isinstance(value, list | tuple) else [value]
            term = field.isin(_cast(column, values, kind))
            term = ~term if op == "not in" else term
        else:
            require(not isinstance(value, list | tuple), f"data.filters: '{op}' takes one value, got {value!r}")
            literal = pc.scalar(_cast(column, [value], kind)[0])
            term = {"==": field == literal, "!=": field != literal, "<": field < literal,
                    "<=": field <= literal, ">": field > literal, ">=": field >= literal}[op]
        expression = term if expression is None else expression & term
        texts.append(f"{column} {op} {value!r}" if not isinstance(value, list) else f"{column} {op} {value}")
    return expression, " and ".join(texts)


def value_type(kind: pa.DataType) -> pa.DataType:
    """A column's value type: a dictionary-encoded column compares as its values."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _cast(column: str, values: list, kind: pa.DataType) -> pa.Array:
    # Through strings: Hydra hands over 2026-01-02 as a string and 5 as an int; both cast alike.
    try:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pa.array([str(v) for v in values], type=kind)
        if pa.types.is_timestamp(kind):
            return pa.array([_utc(v) for v in values], pa.timestamp(kind.unit)).cast(kind)
        return pa.array([str(v) for v in values]).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        raise UserError(f"data.filters: {values} cannot be compared with column '{column}' ({kind})") from None


def _utc(value) -> datetime:
    """A filter's time as naive UTC, which Arrow then reads as the column's instant.

    Tick tables keep their times either with a zone (Spark and Delta's TIMESTAMP, Parquet's
    isAdjustedToUTC) or without one (TIMESTAMP_NTZ): a value with an offset (+09:00, Z) is converted
    to UTC, one without is taken as UTC, so `2026-01-03T00:00:00` filters either kind of column."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
