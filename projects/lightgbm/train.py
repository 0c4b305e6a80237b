"""LightGBM on the shared recipe: only the model code lives here."""

# First: mlrecipes sets what mlflow's pyarrow and LightGBM read when they load (Arrow's allocator,
# OpenMP's waits at barriers).
import mlrecipes  # noqa: F401

# isort: split
import time

import lightgbm as lgb
import mlflow
from mlflow.entities import Metric
from omegaconf import OmegaConf

from mlrecipes import explain, recipe
from mlrecipes.data import tabular
from mlrecipes.errors import UserError, require
from mlrecipes.sweep import pruning

# Objective and evaluation metrics by kind of target; early stopping watches the first metric.
OBJECTIVES = {
    "multiclass": ("multiclass", ["multi_logloss", "multi_error"]),
    "binary": ("binary", ["binary_logloss", "binary_error"]),
    "regression": ("regression", ["rmse"]),
}


def test_curve(curve: recipe.TestCurve):
    """eval.test_every: test accuracy every N rounds (benchmarks only; off by default)."""

    def callback(env: lgb.callback.CallbackEnv) -> None:
        if curve.due(env.iteration + 1):
            curve.snapshot(env.iteration + 1)

    return callback


class LogRounds:
    """Per-round train/validation metrics, named as autolog names them (`validation-multi_logloss`),
    step = round, written in one call every `every` rounds and at the end (`flush`; a training that
    fails loses at most the last `every - 1` rounds' points).

    By hand instead of `mlflow.lightgbm.autolog`: autolog always draws both feature-importance
    charts with one bar per feature and has no switch for it; for MNIST's 784 pixels that is two
    80-inch-tall PNGs, ~7 s of every run (measured: a 2-round run on 300 images took 7.1 s in fit).
    Batched rather than MLflow's async logging, whose queue added ~0.8 s to closing every run.
    """

    def __init__(self, every: int = 5):
        self.every, self.pending = every, []

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        self.pending += [Metric(f"{data}-{name}", float(value), int(time.time() * 1000), env.iteration)
                         for data, name, value, *_ in env.evaluation_result_list]
        if (env.iteration + 1) % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=self.pending)
            self.pending = []


def fit(cfg, ds) -> recipe.Trained:
    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    objective, metrics = OBJECTIVES[ds.objective]
    params = {"metric": metrics, **OmegaConf.to_container(m.params), "objective": objective, "seed": cfg.seed}
    if ds.objective == "multiclass":
        params["num_class"] = ds.num_classes
    # the test curve's clock starts here: binning the Dataset is training work
    curve = recipe.TestCurve(cfg, ds, prepare=lambda X: tabular(ds, X))
    # pandas categoricals train as LightGBM categorical features; missing values stay NaN. Binned here,
    # with the run's params (as lgb.train would), so that the training frame can go before training.
    train = lgb.Dataset(tabular(ds, ds.X_train), label=ds.y_train, params=params)
    try:
        train.construct()
    except lgb.basic.LightGBMError as exc:  # binning checks every parameter, e.g. num_leaves=1, max_bin=1
        raise UserError(f"lightgbm rejected the parameters: {str(exc).splitlines()[0]}") from None
    ds.release_training_rows()  # the Dataset holds the bins (free_raw_data: it dropped its frame)
    val = lgb.Dataset(tabular(ds, ds.X_val), label=ds.y_val, reference=train)
    rounds = LogRounds()
    try:
        booster = lgb.train(
            params,
            train,
            num_boost_round=int(m.num_boost_round),
            # the training rows only on request (eval.train_curve), as LightGBM's own default
            valid_sets=[train, val] if cfg.eval.train_curve else [val],
            valid_names=["train", "validation"] if cfg.eval.train_curve else ["validation"],
            # the test curve predicts with the first N rounds afterwards, also those past the best one
            keep_training_booster=bool(curve.every),
            callbacks=[
                lgb.early_stopping(int(m.early_stopping_rounds), first_metric_only=True, verbose=True),
                lgb.log_evaluation(int(m.log_every)),
                rounds,
                *pruning.callbacks("lightgbm"),  # inside a sweep only: report rounds, prune
                *([test_curve(curve)] if curve.every else []),
            ],
        )
    except lgb.basic.LightGBMError as exc:  # bad params surface here, e.g. num_leaves=1
        raise UserError(f"lightgbm rejected the parameters: {str(exc).splitlines()[0]}") from None
    rounds.flush()
    curve.finish(lambda n, X: booster.predict(X, num_iteration=n))
    # What the task chose (the rest of the booster's parameters are the config's model.params.*).
    chosen = {k: params[k] for k in ("objective", "num_class") if k in params}
    mlflow.log_params({**chosen, "metric": ",".join(metrics)})
    mlflow.log_metrics({"best_iteration": booster.best_iteration, "stopped_iteration": booster.current_iteration()})
    # Gain and split counts of the trees up to the best iteration; contributions of a test sample (TreeSHAP).
    explain.explain(cfg, ds, booster.feature_name(), booster.feature_importance("gain"),
                    booster.feature_importance("split"),
                    lambda X: booster.predict(X, pred_contrib=True, num_iteration=booster.best_iteration))

    def log_model(**kw):
        # save_model keeps trees up to best_iteration, so the logged model is the early-stopped one.
        if ds.feature_names is None:  # images: the lightgbm flavor as is
            return mlflow.lightgbm.log_model(booster, **kw)
        return recipe.log_table_model("lightgbm", booster, ds, **kw)

    return recipe.Trained(
        prepare=lambda X: tabular(ds, X),
        requirements=("lightgbm", "numpy", "scipy", "pandas", "scikit-learn"),  # what inference finds
        predict=lambda X: booster.predict(X, num_iteration=booster.best_iteration),
        log_model=log_model,
    )


def fit_dask(cfg, cd, client):
    """compute=dask: lightgbm.dask on the cluster's partitions (mlrecipes.compute.boost), the same model logged."""
    from mlrecipes.compute import boost, steps

    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    # lightgbm.dask has no early stopping: every round trains, then the round with the best validation
    # metric (measured on all validation rows, on the workers) is kept (compute.boost).
    booster, params = boost.lightgbm(client, cd, m, cfg.seed)
    mlflow.log_params({k: params[k] for k in ("objective", "num_class", "max_bin") if k in params})
    return steps.ClusterTrained("lightgbm", booster,
                                requirements=("lightgbm", "numpy", "scipy", "pandas", "scikit-learn"))


if __name__ == "__main__":
    recipe.main(__file__, fit, fit_dask=fit_dask)
