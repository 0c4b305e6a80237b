"""Boosted trees trained on the cluster: `xgboost.dask` and `lightgbm.dask`, on ClusterData.

Both return the native booster, which the run logs as the same `table_model` pyfunc as a
single-process run (recipe.log_table_model), and the per-round curves, which the driver logs to
the MLflow run with step = round, named as autolog names them (`validation-mlogloss`).

- XGBoost: `DaskQuantileDMatrix` per part (the validation one binned with the training one's
  cuts; its `max_bin` the booster's), early stopping on the validation rows, the trees up to the
  best round kept.
- LightGBM: its Dask interface has no early stopping, and its eval_set is measured on each
  worker's local validation rows only. So it trains `num_boost_round` rounds without one; then the
  workers measure the validation metric on *all* validation rows after every round (or every
  `model.validation_every`; raw scores accumulated block by block: one pass over the trees) and
  the trees up to the best round are kept: early stopping's model, without its saving of time.
  Logged: model.early_stopping=best_checkpoint_after_training, model.validation_every.
Features and label are persisted together before a matrix is built (dask's optimiser may
otherwise give them different partitions).
"""

from __future__ import annotations

import time

import numpy as np

from mlrecipes.compute import ingest, metrics, spread
from mlrecipes.errors import UserError, one_line, see

XGB_METRICS = {"multiclass": ("multi:softprob", ["mlogloss", "merror"]),
               "binary": ("binary:logistic", ["logloss", "error"]),
               "regression": ("reg:squarederror", ["rmse"])}
LGB_METRICS = {"multiclass": ("multiclass", "multi_logloss"), "binary": ("binary", "binary_logloss"),
               "regression": ("regression", "rmse")}


def log_curves(history: dict[str, dict[str, list[float]]], step_of=lambda i: i) -> None:
    """{data: {metric: [value per round]}} -> `<data>-<metric>` metrics, step = round, in batches."""
    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(f"{data}-{name}", float(v), now, step_of(i))
              for data, named in history.items() for name, values in named.items() for i, v in enumerate(values)]
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(points), 1000):
        mlflow.MlflowClient().log_batch(run_id, metrics=points[start:start + 1000])


def lost_peer(message: str) -> bool:
    """Whether an XGBoostError is the collective's (a peer's socket gone), not a bad input."""
    return any(word in message for word in ("collective", "allgather", "allreduce", "socket.h", "Connection"))


def _persisted(client, part, features: list[str], seed: int):
    """(X, y) persisted together, with rows on every worker (spread)."""
    frame = spread.across_workers(client, client.persist(part[[*features, ingest.TARGET]]), seed)
    X, y = client.persist([frame[features], frame[ingest.TARGET]])
    return X, y


PLACEMENTS = 3


def _xgboost_matrices(client, cd: ingest.ClusterData, max_bin: int, seed: int):
    """(training, validation) DaskQuantileDMatrix held by the same workers.

    xgboost.dask trains on every worker that holds a part of either matrix and fails on one that
    holds no rows of one of them ("A worker cannot have empty input..."). The parts are spread over
    the workers up when they are placed; a worker that joins meanwhile (a nanny restarting a killed
    worker, an autoscaler) can take some of the tasks that build one matrix and none of the other's.
    Then both are placed again, on the workers up now; a cluster that keeps changing is a lost worker
    to the run (retryable), not an error in the user's data."""
    import xgboost as xgb

    from mlrecipes.compute import steps

    for _ in range(PLACEMENTS):
        X, y = _persisted(client, cd.train, cd.features, seed)
        Xv, yv = _persisted(client, cd.validation, cd.features, seed)
        dtrain = xgb.dask.DaskQuantileDMatrix(client, X, y, max_bin=max_bin, enable_categorical=True)
        dval = xgb.dask.DaskQuantileDMatrix(client, Xv, yv, ref=dtrain, max_bin=max_bin, enable_categorical=True)
        held = set(dtrain.worker_map), set(dval.worker_map)
        if held[0] == held[1]:
            return dtrain, dval
    raise steps.WorkerLost(f"the Dask workers changed while the training data was placed (training rows on "
                           f"{', '.join(sorted(held[0]))}; validation rows on {', '.join(sorted(held[1]))}; "
                           f"placed {PLACEMENTS} times): nothing was registered; the run can be retried"
                           + see("a-dask-worker-was-lost"))


def xgboost(client, cd: ingest.ClusterData, model_cfg, seed: int, train_curve: bool = False):
    """(booster up to the best round, params) from xgboost.dask with early stopping on validation;
    `train_curve`: the training rows' metrics every round too (eval.train_curve)."""
    import xgboost as xgb
    import xgboost.dask  # noqa: F401  (a submodule: not loaded by `import xgboost`)
    from omegaconf import OmegaConf

    objective, eval_metric = XGB_METRICS[cd.objective]
    own = {k: v for k, v in OmegaConf.to_container(model_cfg.params, resolve=True).items() if v is not None}
    params = {"eval_metric": eval_metric, **own, "objective": objective, "seed": int(seed)}
    if cd.objective == "multiclass":
        params["num_class"] = cd.num_classes
    max_bin = int(params.get("max_bin") or 256)
    params["max_bin"] = max_bin  # the matrices' bins and the booster's must agree
    try:
        dtrain, dval = _xgboost_matrices(client, cd, max_bin, seed)
        out = xgb.dask.train(client, params, dtrain, num_boost_round=int(model_cfg.num_boost_round),
                             evals=[*([(dtrain, "train")] if train_curve else []), (dval, "validation")],
                             early_stopping_rounds=int(model_cfg.early_stopping_rounds),
                             verbose_eval=int(model_cfg.get("verbose_eval") or 0) or False)
    except xgb.core.XGBoostError as exc:
        if lost_peer(str(exc)):  # a worker died under the collective: steps.guard_workers says so
            raise
        raise UserError(f"xgboost rejected the data or parameters: {one_line(str(exc))}") from None
    booster, history = out["booster"], out["history"]
    log_curves(history)
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    import mlflow

    mlflow.log_metrics({"best_iteration": best, "stopped_iteration": booster.num_boosted_rounds()})
    return booster[: best + 1], params


def _checkpoint_sums(frame, data: str, key: str, features, task: str, k: int, every: int, rounds: int):
    """Validation partial sums after every `every` rounds, from raw scores accumulated block by
    block (one pass over the trees; runs on a worker)."""
    import pandas as pd

    from mlrecipes.compute import predict

    if len(frame) == 0:
        return [metrics.partial(frame.assign(**{c: np.zeros(0) for c in predict.output_columns(task, k)}),
                                task, k, ingest.TARGET) for _ in range(0, rounds, every)]
    booster = predict.native("lightgbm", data, key)
    X = frame[features]
    raw = None
    out = []
    for start in range(0, rounds, every):
        block = booster.predict(X, raw_score=True, start_iteration=start, num_iteration=min(every, rounds - start))
        raw = block if raw is None else raw + block
        scores = np.asarray(raw, dtype=np.float64)
        if task == "regression":
            part = pd.DataFrame({ingest.TARGET: frame[ingest.TARGET].to_numpy(), metrics.PREDICTION: scores})
        else:
            if scores.ndim == 1:
                p1 = 1 / (1 + np.exp(-scores))
                proba = np.column_stack([1 - p1, p1])
            else:
                e = np.exp(scores - scores.max(axis=1, keepdims=True))
                proba = e / e.sum(axis=1, keepdims=True)
            part = pd.DataFrame({ingest.TARGET: frame[ingest.TARGET].to_numpy(),
                                 **{f"p{i}": proba[:, i] for i in range(k)}})
        out.append(metrics.partial(part, task, k, ingest.TARGET))
    return out


def lightgbm(client, cd: ingest.ClusterData, model_cfg, seed: int):
    """(booster up to the best validation checkpoint, params) from lightgbm.dask (see the module)."""
    import dask
    import lightgbm as lgb
    import lightgbm.dask  # noqa: F401
    import mlflow
    from omegaconf import OmegaConf

    from mlrecipes.compute import predict

    objective, metric = LGB_METRICS[cd.objective]
    own = {k: v for k, v in OmegaConf.to_container(model_cfg.params, resolve=True).items() if v is not None}
    rounds = int(model_cfg.num_boost_round)
    # Every round by default: one pass over the trees either way (raw scores accumulate block by block).
    every = max(1, int(model_cfg.get("validation_every") or 1))
    # time_out: minutes LightGBM's workers wait for each other's sockets (its default, 120, makes a
    # worker that never connects a two-hour hang).
    params = {"time_out": 5, **own, "objective": objective, "random_state": int(seed), "n_estimators": rounds}
    if cd.objective == "multiclass":
        params["num_class"] = cd.num_classes
    estimator = lgb.DaskLGBMRegressor if cd.task == "regression" else lgb.DaskLGBMClassifier
    X, y = _persisted(client, cd.train, cd.features, seed)
    try:
        # No client=: the default client of the run (a Client handed over fails to pickle).
        model = estimator(**params).fit(X, y)
    except lgb.basic.LightGBMError as exc:
        raise UserError(f"lightgbm rejected the parameters: {one_line(str(exc))}") from None
    booster = model.booster_
    data, key = predict.raw_model("lightgbm", booster)
    shared = client.scatter(data, broadcast=True, hash=False)
    k = cd.num_classes
    per_partition = dask.compute(*[dask.delayed(_checkpoint_sums)(p, shared, key, cd.features, cd.task, k, every,
                                                                   booster.current_iteration())
                                   for p in cd.validation.to_delayed()])
    checkpoints = [sum_dicts([p[i] for p in per_partition]) for i in range(len(per_partition[0]))]
    values = [metrics.finish(c, cd.task, "validation") for c in checkpoints]
    watched = "validation_rmse" if cd.task == "regression" else "validation_log_loss"
    curve = [v[watched] for v in values]
    best_checkpoint = int(np.argmin(curve))
    best = min(booster.current_iteration(), (best_checkpoint + 1) * every)
    log_curves({"validation": {metric: curve}}, step_of=lambda i: min((i + 1) * every, booster.current_iteration()))
    mlflow.log_params({"model.early_stopping": "best_checkpoint_after_training", "model.validation_every": every})
    mlflow.log_metrics({"best_iteration": best, "stopped_iteration": booster.current_iteration()})
    # The logged model keeps the trees up to the best checkpoint (save_model's num_iteration).
    booster.best_iteration = best
    return booster, params


def sum_dicts(parts: list[dict]) -> dict:
    total: dict = {}
    for one in parts:
        for key, value in one.items():
            total[key] = total[key] + value if key in total else value
    return total
