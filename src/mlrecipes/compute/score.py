"""Scoring on a Dask cluster (`-e predict -P compute=dask`): the slice's files scored on the workers.

The driver opens the slice as a single-process run does (scoring.inputs.table_slice: the same
filters, window, keys and checks) and lists its files (compute.read.pieces), never its rows. Each
file is one task: a worker scans it with the same filter and columns, cuts it into the same chunks
(inputs.table_chunks) and scores them with the same code (scoring.predict.score: the native booster,
checked against the model's pyfunc on its first rows), so every row gets the prediction it gets in
one process. The model travels once, as the bytes of its MLflow directory, and is loaded once per
worker process (compute.predict.pyfunc_of). Each task returns its partition's Stats, which the
driver adds up (Stats.add) into the run's metrics: the same names and values as one process.

The writes keep the single-process guarantees:
- Parquet: each task writes its partition's files into the run's staging directory (named by the
  slice, the run and the partition: a task that Dask runs again rewrites the same files); once every
  task is done the driver swaps them in (outputs.ParquetOutput.commit), signals held, as one process does.
- Delta: ONE commit, by the driver. It streams the scored partitions, one at a time and in order,
  into the single-process `write_deltalake` call (the slice's predicate replaced) as a
  RecordBatchReader: the driver holds one partition at a time, and with at most 2 tasks per worker
  thread in flight the cluster holds a bounded number of scored partitions, whatever the table.

A failure, a refusal (scoring.max_unseen_fraction, an empty slice) or a signal before the commit
leaves the output as it was. A worker lost mid run ends it with one line and exit 75
(steps.guard_workers): the staging is deleted and nothing is committed, never a half-replaced
slice; a retry scores the slice again.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from collections import deque
from dataclasses import dataclass

import pyarrow as pa

from mlrecipes.compute import cluster, features, packages, predict, read, steps
from mlrecipes.errors import UserError, one_line, require
from mlrecipes.lifecycle import Outcome, Signals, Terminated
from mlrecipes.scoring import inputs, outputs
from mlrecipes.scoring import run as scoring
from mlrecipes.scoring.model import Model, check_schema
from mlrecipes.scoring.predict import score
from mlrecipes.scoring.settings import Settings
from mlrecipes.scoring.stats import Stats

TASK = "mlrecipes-score-"  # the tasks' keys: TASK<run id>-<partition>
SETTLE_S = 30.0  # how long a failed run waits for its cancelled tasks still running on the workers


@dataclass(frozen=True)
class Job:
    """What every partition's task shares."""

    scan: read.Scan  # the table's format, filesystem, schema and the slice's filter
    model: Model  # without its pyfunc: each worker loads it from the model's bytes (model_key)
    model_key: str
    passthrough: list[str]
    target: str | None
    group: str | None
    batch_size: int
    meta: dict  # scoring.run.scoring_meta: the same for every row of the run
    staging: outputs.ParquetOutput | None  # Parquet: tasks stage their files; Delta: None, the driver writes
    partition_by: list[str]
    mode: str


def run(cfg, settings: Settings, run_id: str, signals: Signals) -> Outcome | None:
    """A scoring run's body on the cluster of cfg.compute: None when it finished; a lost worker is one
    line and a FAILED outcome with EXIT_RETRY (anything else is left to lifecycle.guarded)."""
    try:
        score_run(cfg, settings, run_id, signals)
    except steps.WorkerLost as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return Outcome("FAILED", steps.EXIT_RETRY, str(exc))
    return None


def score_run(cfg, settings: Settings, run_id: str, signals: Signals) -> None:
    import mlflow

    model = scoring.record_model(cfg, settings)
    sliced = inputs.table_slice(cfg, model)
    featured = features.for_scoring(cfg, model, sliced, settings)  # a model's window features (compute.features)
    check_schema(model, sliced.source.schema, sliced.source.describe())  # here, not once per task
    source = sliced.input(iter(()))
    mlflow.log_params(source.params)
    compute_cfg = cfg.compute
    partition_by = str(compute_cfg.get("partition_by") or "file")
    require(partition_by in read.PARTITION_BY,
            f"compute.partition_by must be one of {', '.join(read.PARTITION_BY)}, got {partition_by!r}")
    filesystem, root = read._filesystem(sliced.source, dict(cfg.data.get("storage_options") or {}))
    pieces = read.pieces(sliced.source, root, partition_by)
    fmt, output = scoring.open_output(cfg, settings, source, run_id)
    try:
        data, key = predict.model_bytes(model.uri)
        scan = read.Scan(sliced.source.describe(), sliced.source.dataset.format, filesystem, sliced.source.schema,
                         {}, sliced.source.filter)
        job = Job(scan, dataclasses.replace(model, pyfunc=None), key, sliced.passthrough, sliced.target,
                  sliced.group, settings.batch_size, scoring.scoring_meta(model, run_id),
                  output if fmt == "parquet" else None, list(source.partition_by), settings.mode)
        local = not (compute_cfg.get("address") or compute_cfg.get("cluster"))
        with cluster.client(compute_cfg) as client:
            try:
                stats, seconds = steps.guard_workers(
                    client, lambda: on_cluster(client, compute_cfg, local, job, pieces, data, output, source, model,
                                               settings, signals, run_id, featured),
                    left="the output is unchanged", paused_timeout_s=steps.paused_timeout(compute_cfg))
            except BaseException:
                _settle(client, f"{TASK}{run_id[:12]}-")  # before the staging is deleted (abort, below)
                raise
    except BaseException:
        output.abort()
        raise
    scoring.report(cfg, model, stats, seconds, run_id, featured and featured.report)


def on_cluster(client, compute_cfg, local: bool, job: Job, pieces: list[read.Piece], data: bytes, output,
               source: inputs.Input, model: Model, settings: Settings, signals: Signals, run_id: str,
               featured: features.Scoring | None = None):
    """The workers checked, then every partition scored and written: (the run's Stats, seconds scoring)."""
    import mlflow

    versions = packages.prepare(client, ["mlflow", *_framework(model)], local=local)
    mlflow.log_params({**cluster.params(compute_cfg, client),
                       **{f"compute.version.{n}": v for n, v in versions.items() if v}})
    print(f"[score] {model.uri} on {source.describe} ({len(pieces)} files) on {cluster.describe(compute_cfg)} "
          f"-> {'parquet' if job.staging else 'delta'} {settings.output_uri} ({settings.mode})", flush=True)
    started = time.perf_counter()
    if featured:  # the slice's partitions with their window features, in place of its files
        pieces = featured.pieces(client, pieces)
    stats = write(client, job, pieces, data, output, source, model, settings, signals, run_id)
    return stats, time.perf_counter() - started


def write(client, job: Job, pieces: list[read.Piece], data: bytes, output, source: inputs.Input, model: Model,
          settings: Settings, signals: Signals, run_id: str) -> Stats:
    """Scores every partition and writes them (Parquet: staged by the tasks, then swapped; Delta: one
    commit of the stream); returns the run's Stats. Nothing is written unless every partition is scored."""
    parts, refused = Partitions(client, job, pieces, data, signals, run_id), []
    try:
        if job.staging is None:
            batches = itertools.chain.from_iterable(table.to_batches() for table in parts if table is not None)
            scoring.write_predictions(output, source, _then(batches, lambda: scoring.refuse_unseen(
                model, parts.stats, settings.max_unseen, refused)), settings.mode, signals, refused)
            return parts.stats
        for _ in parts:  # the tasks stage their files
            pass
    finally:
        parts.cancel()  # a failure or a signal: the tasks not taken are dropped
    if not parts.stats.rows:
        raise scoring.empty_slice(source)
    scoring.refuse_unseen(model, parts.stats, settings.max_unseen, refused)
    with signals.held():  # the swap: moves then deletes; a signal now waits for its end
        output.commit(settings.mode)
    if signals.received:
        raise Terminated()
    return parts.stats


def _then(items, after):
    """`items`, then `after()` once they are all out (a refusal raised there stops the writer before its commit)."""
    yield from items
    after()


class Partitions:
    """Each partition's scored table (None when staged, or when the filter left it no row), in the
    pieces' order, its Stats added to `stats` and progress logged. At most two tasks per worker
    thread are in flight: the driver takes one result at a time and the cluster holds a bounded number."""

    def __init__(self, client, job: Job, pieces: list[read.Piece], data: bytes, signals: Signals, run_id: str):
        import threading

        self.client, self.job, self.signals, self.run_id = client, job, signals, run_id
        self.todo, self.pending, self.lock = iter(enumerate(pieces)), deque(), threading.Lock()
        self.stats = Stats()
        self.data = client.scatter(data, broadcast=True, hash=False)  # the model's bytes, once per worker

    def _submit(self) -> None:
        item = next(self.todo, None)
        if item is not None:
            future = self.client.submit(score_piece, item[0], item[1], self.job, self.data,
                                        key=f"{TASK}{self.run_id[:12]}-{item[0]}")
            with self.lock:
                self.pending.append(future)

    def __iter__(self):
        import mlflow

        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        for _ in range(max(2, 2 * sum(int(w.get("nthreads", 1)) for w in workers))):
            self._submit()
        tracking = mlflow.MlflowClient()  # explicit run id: a Delta stream is pulled by the writer's thread
        logged_at = time.perf_counter()
        while self.pending:
            if self.signals.received:  # nothing is committed yet
                raise Terminated()
            with self.lock:
                future = self.pending[0]
            part, table = future.result()
            with self.lock:
                self.pending.popleft()
            future.release()
            self._submit()
            self.stats.add(part)
            now = time.perf_counter()
            if now - logged_at >= scoring.PROGRESS_EVERY_S or not self.pending:
                tracking.log_metric(self.run_id, "rows_scored", self.stats.rows, step=self.stats.rows)
                logged_at = now
            yield table

    def cancel(self) -> None:
        """Drops the tasks not taken yet (from any thread: a result waited for raises at once)."""
        with self.lock:
            futures = list(self.pending)
        if futures:
            self.client.cancel(futures)


# ---------------------------------------------------------------- on the workers


class _PieceSource:
    """One file of the slice, read as inputs.table_chunks reads a table (runs on a worker)."""

    def __init__(self, piece: read.Piece, scan: read.Scan):
        self.piece, self.scan, self.schema = piece, scan, scan.schema

    def describe(self) -> str:
        return f"{self.scan.describe} ({self.piece.path})"

    def batches(self, columns: list[str], batch_size: int):
        kwargs = {"partition_expression": self.piece.partition}
        if self.piece.row_groups is not None:
            kwargs["row_groups"] = list(self.piece.row_groups)
        try:
            fragment = self.scan.format.make_fragment(self.piece.path, self.scan.filesystem, **kwargs)
            yield from fragment.to_batches(schema=self.schema, columns=columns, filter=self.scan.filter,
                                           batch_size=batch_size)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
            raise UserError(f"cannot read {self.describe()}: {one_line(str(exc))}") from None


def score_piece(index: int, piece: read.Piece, job: Job, data: bytes) -> tuple[Stats, pa.Table | None]:
    """One file scored: its Stats, and its output rows (Delta) or None (Parquet: staged here)."""
    model = dataclasses.replace(job.model, pyfunc=predict.pyfunc_of(data, job.model_key))
    stats = Stats()
    if isinstance(piece, pa.Table):  # a partition of the slice with its window features (compute.features)
        chunks = inputs.computed_chunks(piece, model, job.passthrough, job.target, job.batch_size, job.group)
    else:
        chunks = inputs.table_chunks(_PieceSource(piece, job.scan), model, job.passthrough, job.target,
                                     job.batch_size, job.group)
    batches = (score(model, chunk, job.meta, stats) for chunk in chunks)
    first = next(batches, None)
    if first is None:
        return stats, None
    if job.staging is None:
        return stats, pa.Table.from_batches(itertools.chain([first], batches))
    reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
    try:  # files named by the partition: a task run again overwrites its own
        job.staging.write(reader, job.partition_by, job.mode, part=f"p{index:06d}-")
    except Exception as exc:
        failure = job.staging.write_failure(exc)
        if failure is None:
            raise
        raise failure from None
    return stats, None


def _settle(client, prefix: str, wait_s: float = SETTLE_S) -> None:
    """Waits (bounded) until no task of this run still runs on a worker. A cancelled task is not
    stopped: one that wrote its files after the staging was deleted would leave them beside the output."""
    def running(dask_worker) -> int:  # nested: sent by value, runs on each worker
        return sum(1 for key, task in dask_worker.state.tasks.items()
                   if str(key).startswith(prefix) and task.state in ("executing", "long-running", "cancelled"))

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if not sum(client.run(running, on_error="ignore").values()):
                return
        except Exception:  # noqa: BLE001 - a cluster gone or closing: nothing left to wait for
            return
        time.sleep(0.2)


def _framework(model: Model) -> list[str]:
    """The booster's package the workers must import (none for a model that is not a table_model)."""
    try:
        framework = getattr(model.pyfunc.unwrap_python_model(), "framework", None)
    except Exception:  # noqa: BLE001 - not a python_model pyfunc
        return []
    return [framework] if framework in ("xgboost", "lightgbm") else []
