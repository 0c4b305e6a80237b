"""The recipe on a Dask cluster (`compute=dask`): the steps of recipe.steps, with the rows on the workers.

ingest → split (compute.ingest) → train (the project's `fit_dask`: xgboost.dask / lightgbm.dask,
compute.boost) → evaluate (test and validation metrics from per-partition sums; plots from a seeded
sample of compute.sample_rows test rows, `evaluation.sampled_rows`) → log the same table_model
pyfunc → register + gate (a champion re-scored on this run's test rows on the workers). The run's
params and metrics carry the single-process names, plus compute.* (where it ran).

A worker lost while training ends the run with one line and EXIT_RETRY, which the launcher and
Airflow treat as worth a retry; nothing is registered (the model is logged only after training).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import numpy as np

from mlrecipes.compute import cluster, ingest, metrics, packages, predict
from mlrecipes.errors import UserError, require, see

EXIT_RETRY = 75  # EX_TEMPFAIL: the cluster lost a worker; the same run may succeed when retried
DEFAULT_PAUSED_TIMEOUT_S = 60.0  # compute.paused_timeout_s


class WorkerLost(Exception):
    """A worker died under the run (killed, out of memory); the run may succeed on a retry."""

    exit_code = EXIT_RETRY


class WorkersPaused(UserError):
    """Every worker stuck at its memory limit. A user error (exit 2), not EXIT_RETRY: the same table
    on workers of the same size pauses them again, so a retry would only wait as long once more;
    like the launcher's memory_limit_mb, the fix is a setting (more memory, workers, partitions)."""


@dataclass
class ClusterTrained:
    """What a project's `fit_dask(cfg, cluster_data, client)` returns."""

    framework: str  # xgboost | lightgbm
    booster: object  # the native booster, trimmed to its best round
    requirements: tuple[str, ...]


def _partition_digest(frame) -> bytes:
    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).digest()


def digest(df) -> str:
    """A digest of every row of `df`, from per-partition hashes in partition order (on the workers)."""
    import dask

    parts = dask.compute(*[dask.delayed(_partition_digest)(p) for p in df.to_delayed()])
    return hashlib.sha256(b"".join(parts) + repr(list(df.columns)).encode()).hexdigest()[:8]


def log_dataset(cd: ingest.ClusterData, sizes: dict[str, int]) -> None:
    """mlflow.log_input per part (schema from the partitions' types, digest of every row), and the params."""
    import warnings

    import mlflow

    from mlrecipes import tracking

    tags = {k.removeprefix("data.source."): str(v) for k, v in cd.params.items() if k.startswith("data.source.")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, context in (("train", "training"), ("validation", "validation"), ("test", "evaluation")):
            part = cd.parts()[name][[*cd.features, ingest.TARGET]]
            schema = part._meta.rename(columns={ingest.TARGET: cd.target})
            dataset = mlflow.data.from_pandas(schema, source=cd.table.source.uri if cd.table else cd.name,
                                              targets=cd.target, name=f"{cd.name}-{name}", digest=digest(part))
            mlflow.log_input(dataset, context=context, tags=tags)
    mlflow.log_params({**cd.params, "data.rows.train": sizes["train"], "data.rows.validation": sizes["validation"],
                       "data.rows.test": sizes["test"]})
    tracking.log_features(cd)  # features.yaml and features.* params, as a single-process run logs them


def prior(cd: ingest.ClusterData) -> np.ndarray:
    """The dummy model of evaluate.baseline: training class shares, or the training mean."""
    y = cd.train[ingest.TARGET]
    if cd.task == "regression":
        return np.array([float(y.mean().compute())])
    counts = y.value_counts().compute()
    shares = np.zeros(cd.num_classes)
    for code, count in counts.items():
        shares[int(code)] = count
    return shares / shares.sum()


def evaluate_on_cluster(client, cd, trained: ClusterTrained, sample_rows: int, seed: int):
    """(validation metrics, test metrics, baseline metrics, test sample with its output) on the workers."""
    import mlflow

    from mlrecipes import evaluate

    k = cd.num_classes
    out = {}
    for name, prefix in (("validation", "val"), ("test", "test")):
        frames = predict.scored_frames(client, cd.parts()[name], trained.framework, trained.booster,
                                       cd.features, cd.task, k, ingest.TARGET)
        out[prefix] = metrics.finish(metrics.sums(frames, cd.task, k, ingest.TARGET), cd.task, prefix)
        if name == "test":
            test_scored = frames
    values = prior(cd)
    meta = test_scored._meta
    constant = cd.test.map_partitions(predict.constant, values, cd.task, ingest.TARGET, meta=meta)
    bar = metrics.finish(metrics.sums(constant, cd.task, k, ingest.TARGET), cd.task, "test_baseline")
    sample = metrics.sample(test_scored, sample_rows, seed)
    columns = predict.output_columns(cd.task, k)
    pred = sample[columns].to_numpy(np.float64)
    # The plots and per-class report of a single-process run, drawn from the sample; the logged
    # test_* metrics are then the full test set's, from the partial sums.
    evaluate.evaluate(cd.task, sample[ingest.TARGET].to_numpy(), pred.reshape(-1) if cd.task == "regression" else pred,
                      cd.class_names)
    mlflow.log_metrics({**out["val"], **out["test"], **bar})
    mlflow.log_param("evaluation.sampled_rows", len(sample))
    return out["val"], out["test"], bar


def rescore(client, cd) -> Callable[[str], dict]:
    """The gate's re-scoring of another logged model on this run's test rows, on the workers."""

    def score(uri: str) -> dict:
        import pandas as pd

        from mlrecipes import recipe

        recipe.require_same_features(uri, cd)
        k = cd.num_classes
        meta = pd.DataFrame({ingest.TARGET: cd.test._meta[ingest.TARGET],
                             **{c: pd.Series([], dtype="float64") for c in predict.output_columns(cd.task, k)}})
        frames = cd.test.map_partitions(predict.pyfunc_scored, uri, cd.features, cd.class_names, cd.task,
                                        ingest.TARGET, meta=meta)
        return metrics.finish(metrics.sums(frames, cd.task, k, ingest.TARGET), cd.task, "test")

    return score


def steps(cfg, fit_dask: Callable, register: bool = True):
    """recipe.steps on the cluster of cfg.compute; returns recipe.Outcome."""
    import mlflow

    from mlrecipes import recipe, tracking

    run_id = mlflow.active_run().info.run_id
    tracking.set_tags(cfg)
    tracking.log_config(cfg)
    compute_cfg = cfg.compute
    local = not (compute_cfg.get("address") or compute_cfg.get("cluster"))
    with cluster.client(compute_cfg) as client:
        versions = packages.prepare(client, [str(cfg.framework)], local=local)
        mlflow.log_params({**cluster.params(compute_cfg, client),
                           **{f"compute.version.{n}": v for n, v in versions.items() if v}})
        # One guard from the first read to the gate: any of them waits on the workers.
        outcome, train_seconds = guard_workers(client, lambda: _on_cluster(cfg, client, fit_dask, register, run_id),
                                               paused_timeout_s=paused_timeout(compute_cfg))
    mlflow.log_metric("peak_rss_mb", recipe.peak_rss_mb())
    headline = ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items() if k in ("test_accuracy", "test_rmse"))
    print(f"[{cfg.project}:{cfg.variant}] {headline}, train {train_seconds:.1f}s on the cluster, run {run_id}",
          flush=True)
    return outcome


def _on_cluster(cfg, client, fit_dask: Callable, register: bool, run_id: str):
    """ingest → split → train → evaluate → log → register + gate; (recipe.Outcome, training seconds)."""
    import mlflow

    from mlrecipes import recipe, registry, tracking

    compute_cfg = cfg.compute
    started = time.perf_counter()
    cd = ingest.load(cfg.data, str(cfg.get("task") or "classification"), client,
                     str(compute_cfg.get("partition_by") or "file"))
    sizes = {name: int(part.shape[0].compute()) for name, part in cd.parts().items()}
    mlflow.log_metric("ingest_seconds", time.perf_counter() - started)
    log_dataset(cd, sizes)
    print(f"[{cfg.project}:{cfg.variant}] data {cd.name} on {cluster.describe(compute_cfg)}: {sizes['train']} "
          f"train, {sizes['validation']} validation, {sizes['test']} test rows", flush=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    trained = fit_dask(cfg, cd, client)
    train_seconds = time.perf_counter() - started
    mlflow.log_metrics({"train_seconds": train_seconds, "train_cpu_seconds": time.process_time() - cpu_started})
    validation, results, bar = evaluate_on_cluster(client, cd, trained, int(compute_cfg.get("sample_rows") or 10_000),
                                                   int(cfg.seed))
    mlflow.flush_async_logging()
    example = metrics.sample(cd.test[cd.features], 5, int(cfg.seed), total=sizes["test"])
    info = log_model(trained, cd, example, recipe.pinned_requirements("mlflow", *trained.requirements))
    registered = None
    if register:
        registered = registry.register_and_gate(info.model_uri, cfg.registry.model_name, run_id,
                                                {**results, **bar}, cfg.gate, rescore=rescore(client, cd),
                                                context=tracking.airflow_tags())
    return recipe.Outcome(run_id, {**validation, **results}, info.model_uri, registered), train_seconds


def log_model(trained: ClusterTrained, cd, example, requirements: list[str]):
    """The same table_model pyfunc as a single-process run, with the native booster inside."""
    from mlflow.models import infer_signature

    from mlrecipes import data, recipe, table_model

    raw = data.raw_rows(example[cd.features]).reset_index(drop=True)  # what a reader hands over, as one process
    output = np.asarray(predict.booster_output(trained.booster, trained.framework, example[cd.features]))
    signature = infer_signature(raw, table_model.output(output, cd.task, cd.class_names))
    model_cd = _ModelView(cd)
    return recipe.log_table_model(trained.framework, trained.booster, model_cd, name="model", signature=signature,
                                  input_example=raw, pip_requirements=requirements)


class _ModelView:
    """What recipe.log_table_model reads of a dataset."""

    def __init__(self, cd):
        self.task, self.feature_names, self.categories = cd.task, list(cd.features), cd.categories
        self.class_names = list(cd.class_names)
        self.feature_set = cd.feature_set  # scoring recomputes the window features from the model's definition


def guard_workers(client, body: Callable, left: str = "nothing was registered",
                  paused_timeout_s: float = DEFAULT_PAUSED_TIMEOUT_S):
    """`body()`, with a worker lost on the way turned into WorkerLost (one line, a retryable exit),
    and workers stuck at their memory limit into WorkersPaused (one line, exit 2); `left` says what
    the run left behind (scoring: the output is unchanged).

    xgboost.dask is not fault tolerant: a lost worker fails it (Dask's "Invalid worker address"
    on the driver, or the collective's error from a surviving peer). Elsewhere a lost worker's
    persisted partitions can leave a computation waiting: a watchdog polls the workers every
    second and, when one of them is gone, cancels the client's futures, which ends any wait at once.

    Dask pauses a worker past 80 % of its memory limit (distributed.worker.memory.pause): it starts
    no task until its memory falls. When every worker is paused and one of them has run nothing for
    `paused_timeout_s`, nothing will free memory (spilling has had its chance; what is left is
    the process's own), so the watchdog cancels the futures the same way instead of a wait forever."""
    import threading

    from distributed.scheduler import KilledWorker

    from mlrecipes.compute import boost

    before = set(_workers_now(client))
    gone: set[str] = set()
    paused: dict[str, dict] = {}
    stop = threading.Event()

    def cancel() -> None:
        with suppress(Exception):  # every waiting gather raises at once
            from distributed import Future

            client.cancel([Future(key, client) for key in list(client.futures)], force=True)

    def watch() -> None:
        stalled_since = None
        while not stop.wait(1.0):
            workers = _worker_info(client)
            if workers and before - set(workers):
                gone.update(before - set(workers))
                return cancel()
            stalled_since = (stalled_since or time.monotonic()) if _stalled(workers) else None
            if stalled_since is not None and time.monotonic() - stalled_since > paused_timeout_s:
                paused.update(workers)
                return cancel()

    watchdog = threading.Thread(target=watch, name="mlrecipes-worker-watchdog", daemon=True)
    watchdog.start()
    try:
        return body()
    except Exception as exc:
        if paused:
            raise WorkersPaused(_paused_line(paused, paused_timeout_s, left)) from None
        collective = type(exc).__name__ == "XGBoostError" and boost.lost_peer(str(exc))
        if not gone and (collective or not isinstance(exc, UserError)):
            gone.update(_lost(client, before))
        if gone or collective or isinstance(exc, KilledWorker):
            where = ", ".join(sorted(gone)) or "a peer of xgboost's collective"
            raise WorkerLost(f"a Dask worker was lost while the run used it ({where}): {left}; "
                             "the run can be retried" + see("a-dask-worker-was-lost")) from None
        raise
    finally:
        stop.set()


def paused_timeout(compute_cfg) -> float:
    """compute.paused_timeout_s: how long every worker may stay paused with work waiting."""
    return float(compute_cfg.get("paused_timeout_s") or DEFAULT_PAUSED_TIMEOUT_S)


def _stalled(workers: dict[str, dict]) -> bool:
    """Every worker paused, and not all of them busy: a paused worker runs nothing new (a task
    still running on every worker is progress: xgboost's training tasks may run paused)."""
    busy = [int(w.get("metrics", {}).get("task_counts", {}).get("executing", 0)) > 0 for w in workers.values()]
    return bool(workers) and all(w.get("status") == "paused" for w in workers.values()) and not all(busy)


def _paused_line(workers: dict[str, dict], waited_s: float, left: str) -> str:
    def mib(n) -> str:
        return f"{int(n or 0) / 2**20:.0f}"

    which = ", ".join(f"{addr} at {mib(w.get('metrics', {}).get('memory'))} of {mib(w.get('memory_limit'))} MiB"
                      for addr, w in sorted(workers.items()))
    return (f"every Dask worker has been paused at its memory limit for {waited_s:g} s with work waiting ({which}): "
            f"{left}; raise compute.local.memory_limit (or the cluster's worker memory), "
            "add workers, or read the table in more partitions (compute.partition_by=row_group)"
            + see("dask-workers-paused-at-their-memory-limit"))


def _lost(client, before: set[str], wait_s: float = 5.0) -> set[str]:
    deadline = time.monotonic() + wait_s
    while True:
        gone = before - set(_workers_now(client))
        if gone or time.monotonic() > deadline:
            return gone
        time.sleep(0.25)


def _worker_info(client) -> dict[str, dict]:
    try:
        return dict(client.scheduler_info(n_workers=-1)["workers"])
    except Exception:
        return {}


def _workers_now(client) -> list[str]:
    return list(_worker_info(client))


def run(cfg, fit_dask: Callable):
    """The body of a training run on the cluster: None when it finished; a lost worker is one line and a
    FAILED outcome with EXIT_RETRY (anything else is left to lifecycle.guarded)."""
    from mlrecipes import lifecycle

    require(fit_dask is not None, f"compute=dask: project {cfg.project} has no Dask training (fit_dask)")
    try:
        steps(cfg, fit_dask)
    except WorkerLost as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return lifecycle.Outcome("FAILED", EXIT_RETRY, str(exc))
    return None
