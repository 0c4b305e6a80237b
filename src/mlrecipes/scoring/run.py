"""One scoring run, step by step: check the config, open the run, resolve the model, open the
input and the output, score and write in record batches, report.

Everything a user can get wrong ends with one `error:` line, exit 2 and the run FAILED; a value
of the scoring config checked before the run exists creates no run at all.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mlrecipes import config, lifecycle
from mlrecipes.errors import UserError, exit_now, readable_output
from mlrecipes.lifecycle import Signals, Terminated
from mlrecipes.scoring import outputs
from mlrecipes.scoring.inputs import Input, open_input
from mlrecipes.scoring.model import Model, load_model
from mlrecipes.scoring.predict import score
from mlrecipes.scoring.settings import Settings, settings
from mlrecipes.scoring.slices import slice_id, sql_predicate
from mlrecipes.scoring.stats import UNSEEN_SEE, Stats, most_rows_first, unseen_summary
from mlrecipes.scoring.windowed import FeatureReport

PROGRESS_EVERY_S = 2.0  # a `rows_scored` point at most this often: progress in the UI, not a flood


def main(argv: list[str] | None = None) -> None:
    readable_output()
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:  # a pool the user chose stays
        # Streaming allocates and frees thousands of batches' buffers: Arrow's default mimalloc returns the
        # pages and faults them back as zeroed huge pages, 0.3-0.5 CPU-s per million rows (docs/benchmarks.md).
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    exit_now(run(Path.cwd(), sys.argv[1:] if argv is None else argv))


def run(project_dir: Path, argv: list[str]) -> int:
    import mlflow

    signals = lifecycle.install()
    attached = bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` created the run
    active = None

    def body() -> lifecycle.Outcome | None:
        nonlocal active
        if attached:
            active = mlflow.start_run()
        # The same words as training (key=value, --overrides "a=1 b=2") plus the scoring group.
        cfg = config.compose(project_dir, [*config.parse_argv(argv), "+scoring=default"], optional=("data.target",))
        checked = settings(cfg)  # before a run of our own exists: a bad value creates none
        if not attached:
            from mlrecipes.tracking import ensure_experiment  # opens on its runs table in the UI

            active = mlflow.start_run(experiment_id=ensure_experiment(mlflow.MlflowClient(),
                                                                      str(cfg.scoring.experiment)))
        if checked.dask:  # the same run, its partitions scored on a Dask cluster
            from mlrecipes.compute import score as on_cluster

            return on_cluster.run(cfg, checked, active.info.run_id, signals)
        score_run(cfg, checked, active.info.run_id, signals)
        return None

    outcome = lifecycle.guarded(body, what="scoring run", run_id=lambda: active.info.run_id if active else None,
                                killed_note="; the output is unchanged")
    if active is None:
        return outcome.exit_code
    return lifecycle.close_run(active.info.run_id, outcome)


def score_run(cfg, settings: Settings, run_id: str, signals: Signals) -> None:
    import mlflow

    model = record_model(cfg, settings)
    source = open_input(cfg, model, settings)
    if source.params:
        mlflow.log_params(source.params)
    fmt, output = open_output(cfg, settings, source, run_id)
    print(f"[score] {model.uri} on {source.describe} -> {fmt} {settings.output_uri} ({settings.mode})", flush=True)

    stats = Stats()
    started = time.perf_counter()
    refused: list[str] = []  # why the stream stopped the writer (a native writer may rewrap the error)
    batches = scored_batches(source, model, run_id, stats, settings.max_unseen, signals, refused)
    write_predictions(output, source, batches, settings.mode, signals, refused)
    report(cfg, model, stats, time.perf_counter() - started, run_id, source.features)


def record_model(cfg, settings: Settings) -> Model:
    """Loads the model and names the run after it: tags, params and the composed config."""
    import mlflow

    from mlrecipes import tracking
    from mlrecipes.airflow_context import airflow_tags

    model = load_model(str(cfg.scoring.model), str(cfg.registry.model_name), cfg.data)
    mlflow.set_tags({
        "mlflow.runName": f"score-{model.name}-v{model.version}", "mlrecipes.project": cfg.project,
        "mlrecipes.entry_point": "predict", "mlrecipes.model.name": model.name,
        "mlrecipes.model.version": model.version, "mlrecipes.model.run_id": model.run_id,
        "mlrecipes.dataset": str(cfg.data.name), **tracking.git_state(), **airflow_tags(),
    })
    mlflow.log_params({"model.uri": model.uri, "model.name": model.name, "model.version": model.version,
                       "model.run_id": model.run_id, "output.uri": settings.output_uri})
    tracking.log_config(cfg)
    return model


def open_output(cfg, settings: Settings, source: Input, run_id: str):
    """(format, output), checked writable before anything is read."""
    import mlflow

    options = dict(cfg.data.get("storage_options") or {})
    fmt = outputs.output_format(settings.format, settings.output_uri, source.kind, options)
    if fmt == "delta":
        predicate = sql_predicate(source.conditions, source.schema) if source.conditions else None
        output = outputs.DeltaOutput(settings.output_uri, options, predicate)
    else:
        output = outputs.ParquetOutput(settings.output_uri, options, run_id, slice_id(source.filter_text))
    output.check_writable()
    mlflow.log_params({"output.format": fmt, "slice": source.filter_text or "all rows"})
    return fmt, output


def scoring_meta(model: Model, run_id: str) -> dict:
    """The columns every output row carries about its run (predict.META)."""
    return {"model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
            "scoring_run_id": run_id, "scored_at": datetime.now(UTC)}


def scored_batches(source: Input, model: Model, run_id: str, stats: Stats, max_unseen: float | None,
                   signals: Signals, refused: list[str]):
    """The output batches, scored as the writer pulls them, with `rows_scored` progress."""
    import mlflow

    meta = scoring_meta(model, run_id)
    client = mlflow.MlflowClient()  # explicit run id: the writer's thread has no active run
    logged_at = time.perf_counter()
    for chunk in source.chunks:
        if signals.received:  # stop the writer at the next batch: nothing is committed
            raise Terminated()
        batch = score(model, chunk, meta, stats)
        now = time.perf_counter()
        if now - logged_at >= PROGRESS_EVERY_S or stats.rows == batch.num_rows:
            client.log_metric(run_id, "rows_scored", stats.rows, step=stats.rows)
            logged_at = now
        yield batch
    refuse_unseen(model, stats, max_unseen, refused)  # every row is read, nothing committed yet


def refuse_unseen(model: Model, stats: Stats, max_unseen: float | None, refused: list[str]) -> None:
    """Raises (and records in `refused`) when more rows than scoring.max_unseen_fraction carry a
    category the model never saw: raised before the commit, it stops the writer."""
    if max_unseen is not None and (stats.unseen_rows or 0) > max_unseen * stats.rows:
        refused.append(f"{unseen_summary(model, stats)}: more than scoring.max_unseen_fraction "
                       f"{max_unseen:g}; the output is unchanged{UNSEEN_SEE}")
        raise UserError(refused[0])


def empty_slice(source: Input) -> UserError:
    return UserError(f"no rows to score in {source.describe}: the slice is empty (has its data landed?); "
                     "the output is unchanged")


def write_predictions(output, source: Input, batches, mode: str, signals: Signals, refused: list[str]) -> None:
    """Writes every batch or nothing: on any failure or signal the output stays as it was."""
    import pyarrow as pa

    try:
        first = next(batches, None)
        if first is None:
            raise empty_slice(source)
        reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
        partition = [c for c in source.partition_by if c in first.schema.names]
        outputs.write(output, reader, partition, mode, signals, refused)
    except BaseException:
        output.abort()
        raise
    if signals.received:
        raise Terminated()


def report(cfg, model: Model, stats: Stats, seconds: float, run_id: str, features: FeatureReport | None = None) -> None:
    """The run's metrics and tables, the unseen categories' warning, and the closing line."""
    import mlflow
    import pandas as pd

    from mlrecipes.recipe import peak_rss_mb

    mlflow.log_metrics({"rows_in": stats.rows, "rows_out": stats.rows, "scoring_seconds": seconds,
                        "rows_per_second": stats.rows / max(seconds, 1e-9), "peak_rss_mb": peak_rss_mb(),
                        **stats.metrics(model.task)})
    mlflow.log_metric("rows_scored", stats.rows, step=stats.rows)
    if stats.by:
        group = str(cfg.data.report_by)
        mlflow.log_table(pd.DataFrame([{group: value, "rows": sub.rows, **sub.metrics(model.task)}
                                       for value, sub in sorted(stats.by.items())]), f"evaluation/by_{group}.json")
    if features is not None and features.computed:  # the model's window features, over the slice and its lookback
        mlflow.log_params({"features.lookback": features.lookback, "features.definition": "the model's"})
        mlflow.log_metrics(features.metrics())
        if features.short_rows:
            print(f"warning: {features.summary()}: written as missing, not from a shorter window "
                  "(scoring.max_short_fraction allows this many)", file=sys.stderr, flush=True)
    unseen = unseen_summary(model, stats)
    if unseen:
        mlflow.log_table(pd.DataFrame([{"column": name, "value": value, "rows": rows}
                                       for name, values in sorted(stats.unseen_values.items())
                                       for value, rows in most_rows_first(values)]),
                         "evaluation/unseen_categories.json")
        print(f"warning: {unseen}, scored as a missing value{UNSEEN_SEE}", file=sys.stderr, flush=True)
    live = stats.metrics(model.task)
    headline = f", live accuracy {live['live_accuracy']:.4f}" if "live_accuracy" in live else (
        f", live RMSE {live['live_rmse']:.4f}" if "live_rmse" in live else "")
    print(f"[score] {stats.rows} rows in {seconds:.1f}s ({stats.rows / max(seconds, 1e-9):.0f} rows/s){headline}, "
          f"run {run_id}", flush=True)
