"""Where predictions go, written safely and idempotently.

The *slice* is the rows the filter selects (`data.filters` plus the window, conf/window);
`overwrite-slice` replaces exactly what an earlier scoring of the same slice wrote:
- Delta: one transaction, `write_deltalake(mode="overwrite", predicate=<the filter as SQL>)`; a
  run that fails or is killed commits nothing.
- Parquet: files are written to a staging directory beside the output, then moved in and the
  slice's previous files deleted, with signals held off during that swap. Each file's name starts
  with the slice's id (a hash of the filter), so a slice's files are found again and only they are
  replaced. A run that fails or is killed before the swap leaves the output as it was.
"""

from __future__ import annotations

import os
import threading

import pyarrow as pa

from mlrecipes.data import tables
from mlrecipes.errors import UserError, one_line, require
from mlrecipes.lifecycle import Signals, Terminated


def output_format(fmt: str, uri: str, input_kind: str, options: dict) -> str:
    """parquet or delta; `auto` (fmt is checked by settings): Delta when the output already is a
    Delta table or the input is one."""
    if fmt != "auto":
        return fmt
    filesystem, path = tables.filesystem_for(uri, options)
    from pyarrow import fs

    try:
        info = (filesystem or fs.LocalFileSystem()).get_file_info(f"{path.rstrip('/')}/_delta_log")
    except OSError as exc:
        raise UserError(f"cannot reach output {uri}: {one_line(str(exc))}") from None
    return "delta" if info.type == fs.FileType.Directory or input_kind == "delta" else "parquet"


class ParquetOutput:
    """A Hive-partitioned Parquet directory: stage beside it, then swap the slice's files in."""

    def __init__(self, uri: str, options: dict, run_id: str, slice_name: str):
        from pyarrow import fs

        self.uri = uri
        filesystem, self.path = tables.filesystem_for(uri, options)
        self.fs = filesystem or fs.LocalFileSystem()
        self.path = self.path.rstrip("/")
        parent, _, name = self.path.rpartition("/")
        self.staging = f"{parent}/.{name}.staging-{run_id}"
        self.prefix = f"{slice_name}-"
        self.token = f"{slice_name}-{run_id[:12]}-"

    def check_writable(self):
        try:
            self.fs.create_dir(self.staging, recursive=True)
            probe = f"{self.staging}/.probe"
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise UserError(f"output {self.uri} is not writable: {one_line(str(exc))}") from None

    def write(self, reader: pa.RecordBatchReader, partition_by: list[str], mode: str, part: str = ""):
        """Into the staging directory; `mode` is applied by the swap (commit). `part` names the files of
        one writer of several (a cluster's partition, compute.score), all staged side by side."""
        import pyarrow.dataset as pads

        partitioning = (pads.partitioning(pa.schema([reader.schema.field(c) for c in partition_by]), flavor="hive")
                        if partition_by else None)
        pads.write_dataset(reader, self.staging, filesystem=self.fs, format="parquet", partitioning=partitioning,
                           basename_template=self.token + part + "{i}.parquet",
                           existing_data_behavior="overwrite_or_ignore", max_rows_per_file=1 << 22,
                           max_rows_per_group=1 << 17)

    def write_failure(self, exc: Exception) -> UserError | None:
        """The one line for a failed write; None: not the storage's doing (re-raised as it is)."""
        return UserError(f"cannot write {self.uri}: {one_line(str(exc))}") if isinstance(exc, OSError) else None

    def commit(self, mode: str):
        from pyarrow import fs

        def files(root):
            info = self.fs.get_file_info(root)
            if info.type != fs.FileType.Directory:
                return []
            return [i.path for i in self.fs.get_file_info(fs.FileSelector(root, recursive=True))
                    if i.type == fs.FileType.File]

        existing = files(self.path)
        old = {"overwrite": existing, "append": [],
               "overwrite-slice": [p for p in existing if p.rpartition("/")[2].startswith(self.prefix)]}[mode]
        for staged in files(self.staging):
            if staged.endswith("/.probe"):
                continue
            target = self.path + staged[len(self.staging):]
            self.fs.create_dir(target.rpartition("/")[0], recursive=True)
            self.fs.move(staged, target)  # local: an atomic rename
        for path in old:
            self.fs.delete_file(path)
        self.abort()

    def abort(self):
        try:
            self.fs.delete_dir(self.staging)
        except OSError:
            pass


class DeltaOutput:
    """A Delta table: the slice is replaced in one transaction (nothing is committed on failure)."""

    def __init__(self, uri: str, options: dict, predicate: str | None):
        self.uri = uri
        self.options = tables.delta_storage_options(uri, options)
        self.predicate = predicate
        self.exists = False

    def check_writable(self):
        from deltalake import DeltaTable

        if "://" not in self.uri:
            try:
                os.makedirs(os.path.dirname(self.uri) or ".", exist_ok=True)
            except OSError as exc:
                raise UserError(f"output {self.uri} is not writable: {one_line(str(exc))}") from None
            require(os.access(os.path.dirname(self.uri) or ".", os.W_OK), f"output {self.uri} is not writable")
        self.exists = DeltaTable.is_deltatable(self.uri, storage_options=self.options)

    def write(self, reader: pa.RecordBatchReader, partition_by: list[str], mode: str):
        from deltalake import write_deltalake

        kwargs = {"storage_options": self.options}
        if not self.exists and partition_by:
            kwargs["partition_by"] = partition_by
        if mode == "overwrite-slice":
            kwargs.update(mode="overwrite", predicate=self.predicate) if self.exists else kwargs.update(mode="append")
        else:
            kwargs["mode"] = mode
        write_deltalake(self.uri, reader, **kwargs)

    def write_failure(self, exc: Exception) -> UserError | None:
        """delta-rs reports a storage failure as its own error type: any error but ours is one line."""
        if isinstance(exc, Terminated | UserError):
            return None
        return UserError(f"cannot write Delta table {self.uri}: {one_line(str(exc))}")

    def commit(self, mode: str):
        pass  # the write was the transaction

    def abort(self):
        pass


def write(output: ParquetOutput | DeltaOutput, reader: pa.RecordBatchReader, partition_by: list[str], mode: str,
          signals: Signals, refused: list[str]) -> None:
    """Writes the stream and commits it. `refused`: why the stream stopped the writer, when it did
    (a native writer may rewrap the error it raised)."""
    try:
        in_thread(signals, output.write, ahead(reader), partition_by, mode)
    except Exception as exc:
        if refused:
            raise UserError(refused[0]) from None
        failure = None if signals.received else output.write_failure(exc)
        if failure is None:
            raise
        raise failure from None
    with signals.held():  # the Parquet swap: moves then deletes; a signal now waits for its end
        output.commit(mode)


AHEAD = 2  # batches scored ahead of the writer: memory stays a few batches, whatever the table


def ahead(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The same stream, produced in a thread of its own: the next batches are read and scored (the
    booster releases the GIL) while the writer encodes and writes the last one. An error of the
    stream (a refusal, a signal) reaches the writer at the batch where it happened; a writer that
    stops early stops the producer at its next batch."""
    import queue

    batches: queue.Queue = queue.Queue(maxsize=AHEAD)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in reader:
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001  (raised again in the writer's thread)
            put(exc)

    def consume():
        try:
            while True:
                item = batches.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    threading.Thread(target=produce, name="scoring-ahead", daemon=True).start()
    return pa.RecordBatchReader.from_batches(reader.schema, consume())


def in_thread(signals: Signals, write, *args) -> None:
    """Run a writer (Arrow's or delta-rs' native loop, which pulls our batches) in a thread.

    Python runs signal handlers in the main thread only, and not while it waits inside native
    code: a writer called from the main thread would notice a SIGTERM only after writing
    everything. Here the main thread waits in short joins, so the handler runs at once."""
    failure: list[BaseException] = []

    def target():
        try:
            write(*args)
        except BaseException as exc:  # noqa: BLE001  (handed to the main thread)
            failure.append(exc)

    # Held: a signal is only recorded, so this thread never leaves while the writer still writes;
    # the batch generator sees it and stops the writer at its next batch.
    with signals.held():
        thread = threading.Thread(target=target, name="scoring-writer", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)  # returns to Python often enough for the handler to run
    if signals.received:
        raise Terminated()
    if failure:
        raise failure[0]
