"""The recipe every project runs: compose → ingest → split → train → evaluate → log → gate.

A project's `train.py` supplies only `fit(cfg, dataset) -> Trained`; everything else,
including how a run ends on errors and signals, lives here once.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlrecipes import lifecycle
from mlrecipes.errors import UserError, exit_now, readable_output, require, tracking_failure

SYSTEM_METRICS_INTERVAL_S = 5
# Per-feature importance charts only for tables up to this wide: MNIST's 784-bar chart says
# nothing and costs seconds to draw (the GBDT projects log importance as data either way).
MAX_IMPORTANCE_FEATURES = 100


@dataclass
class Trained:
    """What a project's fit returns."""

    predict: Callable[[object], np.ndarray]  # model input -> (n, classes) probabilities; (n,) for regression
    log_model: Callable[..., object]  # flavor log_model(name=, signature=, input_example=, pip_requirements=)
    requirements: tuple[str, ...]  # distributions the model needs to load, besides mlflow: pinned as installed
    prepare: Callable[[np.ndarray], np.ndarray] = lambda X: X  # dataset X -> model input


def pinned_requirements(*distributions: str) -> list[str]:
    """`name==version` of installed distributions, for a flavor's `pip_requirements`.

    Given these, MLflow skips requirement inference: a subprocess that loads the model a second
    time (~5 s; for torch also ~600 MB more at the run's peak). Local labels such as `+cpu` are
    dropped, as MLflow's inference does, so the pins resolve on PyPI.
    """
    from importlib import metadata

    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in distributions]


def installed_distribution(*candidates: str) -> str:
    """The first of `candidates` installed here, e.g. `xgboost-cpu` of (`xgboost-cpu`, `xgboost`): the
    CPU builds provide the same import under another distribution name, and a model must pin the one
    its environment has (pinning both would install the package twice). Asked by name:
    `metadata.packages_distributions()` reads every installed distribution's file list (~0.5 s)."""
    from importlib import metadata

    for name in candidates:
        try:
            metadata.version(name)
            return name
        except metadata.PackageNotFoundError:
            continue
    return candidates[-1]


def model_example(ds, X_test, pred: np.ndarray) -> dict:
    """signature + input_example of the logged model, in the form a scorer hands over.

    Images: the model's own input. Tables: raw rows (strings, float64; what a Parquet reader
    gives) in, and the table model's output frame (prediction + one probability per class) out.
    """
    from mlflow.models import infer_signature

    if ds.feature_names is None:
        example = X_test[:5]
        return {"signature": infer_signature(example, pred[:5]), "input_example": example}
    from mlrecipes import data, table_model

    # With a fitted transform X_test holds transformed values; the model takes them as read.
    example = data.raw_rows(ds.X_test.iloc[:5]) if getattr(ds, "transform", None) is None else \
        ds.scoring_input().iloc[:5]
    out = table_model.output(pred[:5], ds.task, ds.class_names)
    return {"signature": infer_signature(example, out), "input_example": example}


def log_table_model(framework: str, booster, ds, **kwargs):
    """A booster trained on a table, logged as the `table_model` pyfunc (see that module for why)."""
    import tempfile

    import mlflow

    suffix = "ubj" if framework == "xgboost" else "txt"
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"booster.{suffix}")
        booster.save_model(path)  # lightgbm: the best iteration when early stopping found one
        artifacts, config = {"booster": path}, {}
        # The model carries its feature definition (scoring computes from it) and its fitted transform.
        if getattr(ds, "feature_set", None):
            config["feature_set"] = ds.feature_set
        if getattr(ds, "transform", None) is not None:
            from mlrecipes.features import transform

            artifacts["transform"] = str(Path(tmp) / "transform.skops")
            trusted = transform.save(ds.transform, artifacts["transform"])
            config["transform"] = {"name": transform.name_of(ds.transform), "columns": list(ds.transform_columns),
                                   "trusted": trusted}
            kwargs["pip_requirements"] = [*kwargs.get("pip_requirements", []),
                                          *pinned_requirements("scikit-learn", "skops")]
        return mlflow.pyfunc.log_model(
            python_model=str(Path(__file__).with_name("table_model.py")),
            artifacts=artifacts,
            model_config={"framework": framework, "task": ds.task, "features": list(ds.feature_names),
                          "categories": ds.categories, "class_names": list(ds.class_names), **config},
            **kwargs,
        )


def rescore_on(ds) -> Callable[[str], dict]:
    """How the gate re-scores a champion on this run's test rows (evaluate.on_test_rows). A champion
    with window features of another definition would read this run's features as its own: it is
    not re-scored (the gate says why and keeps its logged value)."""
    from mlrecipes import evaluate

    def rescore(uri: str) -> dict:
        require_same_features(uri, ds)
        return evaluate.on_test_rows(uri, ds)

    return rescore


def require_same_features(uri: str, ds) -> None:
    """ValueError when the model at `uri` has window features of another definition than `ds`'s:
    it would read this run's feature columns as its own (the gate then keeps its logged value)."""
    import mlflow

    flavor = mlflow.models.Model.load(uri).flavors.get("python_function", {})
    theirs = (flavor.get("config") or {}).get("feature_set")
    if theirs and theirs != getattr(ds, "feature_set", None):
        raise ValueError("its window features are not this run's (features.yaml of each run)")


class TestCurve:
    """Opt-in test accuracy during training, for benchmarks: `eval.test_every: N` (0, the default: off).

    Every N epochs / rounds the project calls `snapshot` with the model's state at that point (a copy
    of its weights, or just the round for boosted trees); after training, `finish` evaluates each
    snapshot on the test set and logs `test_curve_accuracy` and `test_curve_seconds` (training seconds
    since the curve was made, not counting the snapshots) with step = epoch / round. Projects make it
    once the split is in the form their model reads (float pixels), as the benchmark's peers start
    their clocks after their own float conversion. Evaluating in the middle of training instead
    slowed the Keras epochs after it by ~15 %, so the curve measured itself.
    Nothing selects on it: early stopping and every choice still watch validation only.
    """

    def __init__(self, cfg, ds, prepare: Callable = lambda X: X):
        self.every = int(cfg.get("eval", {}).get("test_every", 0) or 0)
        if self.every and ds.task == "regression":
            raise UserError("eval.test_every logs test accuracy: classification tasks only")
        self._X, self._y, self._prepare = ds.X_test, ds.y_test, prepare
        self._points: list[tuple[int, float, object]] = []
        self.started, self._paused = time.perf_counter(), 0.0

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def snapshot(self, step: int, state: Callable | None = None) -> None:
        """At a due step: `state()` copies what `finish` needs to predict as the model was here
        (without it the state is the step itself: a boosted model predicts with its first N rounds)."""
        t0 = time.perf_counter()
        self._points.append((step, t0 - self.started - self._paused, state() if state else step))
        self._paused += time.perf_counter() - t0

    def finish(self, predict_at: Callable) -> None:
        """After training. predict_at(state, prepared test input) -> class scores (n, classes), or (n,)
        P(positive) for binary; the project puts its final weights back afterwards."""
        if not self._points:
            return
        import mlflow

        X = self._prepare(self._X)
        for step, seconds, state in self._points:
            scores = np.asarray(predict_at(state, X))
            y_pred = scores.argmax(axis=1) if scores.ndim == 2 else (scores > 0.5).astype(int)
            mlflow.log_metrics({"test_curve_accuracy": float((y_pred == self._y).mean()),
                                "test_curve_seconds": seconds}, step=step)
        self._points = []


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # Linux reports KiB


def main(project_file: str, fit: Callable, argv: list[str] | None = None, fit_dask: Callable | None = None) -> None:
    """Entry point for `train.py`: run the recipe and exit with a meaningful status. `fit_dask`: the
    project's training on a Dask cluster (compute=dask; mlrecipes.compute.steps)."""
    readable_output()
    rc, tracking_lost = run(Path(project_file).resolve().parent, fit, sys.argv[1:] if argv is None else argv,
                            fit_dask=fit_dask)
    if tracking_lost:
        # MLflow's exit handler would try to end the run: another whole retry budget of waiting
        # for a server that is gone. The run stays RUNNING until the reaper ends it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    exit_now(rc)


@dataclass
class Outcome:
    """What the recipe's steps leave behind in their run: every evaluation metric and the model."""

    run_id: str
    metrics: dict[str, float]  # validation_* (what a sweep optimises) and test_* (what the gate judges)
    model_uri: str
    registered: dict | None  # register_and_gate's answer; None when registration was skipped


def run(project_dir: Path, fit: Callable, argv: list[str], fit_dask: Callable | None = None) -> tuple[int, bool]:
    """One training run; returns (exit code, whether the tracking server was lost on the way)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlrecipes import config

    lifecycle.install()
    # Attaches to the run `mlflow run` created (MLFLOW_RUN_ID), or starts one when called directly.
    # System metrics (CPU, memory over time) show how close a run came to the worker's limits.
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    try:
        active = mlflow.start_run(log_system_metrics=True)
    except MlflowException as exc:  # no login, no permission, no server: no run
        failure = tracking_failure(exc, mlflow.get_tracking_uri())
        if failure is None:
            raise
        print(f"error: {failure[0]}", file=sys.stderr, flush=True)
        return failure[1], False
    run_id = active.info.run_id

    def body():
        cfg = config.compose(project_dir, config.parse_argv(argv))
        from mlrecipes import compute

        if compute.on_dask(cfg):  # the same steps with the rows on a Dask cluster
            from mlrecipes.compute import steps as on_cluster

            return on_cluster.run(cfg, fit_dask)
        steps(cfg, fit)
        return None

    outcome = lifecycle.guarded(body, what="run", run_id=run_id)
    return lifecycle.close_run(run_id, outcome), outcome.tracking_lost


def steps(cfg, fit: Callable, ds=None, register: bool = True) -> Outcome:
    """ingest → split → train → evaluate → log model → register + gate, in the active run.

    The caller owns the run (starts it, ends it, decides its status): `run` for one training,
    `mlrecipes.sweep` for each trial, as a nested run under the sweep's. `ds`: data already
    loaded for this config (a sweep reads it once); `register=False`: log the model only.
    """
    import mlflow

    from mlrecipes import data, evaluate, registry, tracking

    run_id = mlflow.active_run().info.run_id
    tracking.set_tags(cfg)
    tracking.log_config(cfg)
    task = str(cfg.get("task") or "classification")

    if ds is None:
        ingest_started = time.perf_counter()
        ds = data.load(cfg.data, task)
        ds.single_use = True  # this fit's alone: it may drop the training rows it has copied
        mlflow.log_metric("ingest_seconds", time.perf_counter() - ingest_started)  # read + type + split
    tracking.log_dataset(ds)
    require(ds.feature_names is not None or not (cfg.get("features") or {}).get("define"),
            f"features.define: window features are for tables, and data={ds.name} is an image set; set features=none")
    tracking.log_features(ds)  # the feature definition (features.yaml) and the names, when the table has them
    # A table's reader has checked the column and read its test values (data.test_rows); an image set has none.
    report_by = cfg.data.get("report_by")
    require(not report_by or ds.feature_names is not None,
            f"data.report_by: {report_by!r}, but data={ds.name} is an image set (no columns); set data.report_by=null")
    print(
        f"[{cfg.project}:{cfg.variant}] data {ds.name}: {len(ds.y_train)} train, "
        f"{len(ds.y_val)} validation, {len(ds.y_test)} test rows",
        flush=True,
    )

    started, cpu_started = time.perf_counter(), time.process_time()
    trained = fit(cfg, ds)
    train_seconds = time.perf_counter() - started
    # CPU seconds beside wall seconds: comparable between runs on a shared worker.
    mlflow.log_metrics({"train_seconds": train_seconds, "train_cpu_seconds": time.process_time() - cpu_started})

    # The final model on the validation rows (val_accuracy, val_rmse, ...): what a sweep optimises
    # and compares trials by, never the test set. `val_`, not `validation_`: the projects' own
    # per-epoch / per-round curves use that prefix, and these are one value each.
    val_pred = np.asarray(trained.predict(trained.prepare(ds.X_val)))
    validation = evaluate.scores(task, ds.y_val, val_pred, ds.num_classes, "val")
    mlflow.log_metrics(validation)
    X_test = trained.prepare(ds.X_test)
    pred = np.asarray(trained.predict(X_test))
    results = evaluate.evaluate(task, ds.y_test, pred, ds.class_names)
    bar = evaluate.baseline(task, ds.y_train, ds.y_test, ds.num_classes)
    mlflow.log_metrics(bar)
    # Test rows whose symbol (any string feature) the training rows lack, e.g. a listing newer than
    # the training window: the model scores them without it, as scoring counts its unseen_rows.
    unseen = data.unseen_test_rows(ds)
    if unseen is not None:
        mlflow.log_metric("test_unseen_rows", int(unseen.sum()))
    if report_by:
        evaluate.by_group(task, ds.y_test, pred, ds.num_classes, ds.y_train, report_by,
                          data.positions_by_value(data.test_rows(ds)[report_by]), unseen)
    mlflow.flush_async_logging()  # autolog may still be writing per-iteration metrics
    evaluate.log_training_curves(run_id)

    info = trained.log_model(
        name="model",
        **model_example(ds, X_test, pred),
        pip_requirements=pinned_requirements("mlflow", *trained.requirements),
    )
    mlflow.log_metric("peak_rss_mb", peak_rss_mb())
    registered = None
    if register:
        registered = registry.register_and_gate(info.model_uri, cfg.registry.model_name, run_id, {**results, **bar},
                                                cfg.gate,
                                                rescore=rescore_on(ds),
                                                context=tracking.airflow_tags())  # the run's Airflow task
    headline = ", ".join(f"{k} {v:.4f} (baseline {bar[registry.baseline_metric(k)]:.4f})"
                         for k, v in results.items() if k in ("test_accuracy", "test_rmse"))
    print(
        f"[{cfg.project}:{cfg.variant}] {headline}, "
        f"train {train_seconds:.1f}s, peak RSS {peak_rss_mb():.0f} MB, run {run_id}",
        flush=True,
    )
    return Outcome(run_id, {**validation, **results}, info.model_uri, registered)
