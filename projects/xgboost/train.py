"""XGBoost on the shared recipe: only the model code lives here."""

# First: mlrecipes sets what mlflow's pyarrow and XGBoost read when they load (Arrow's allocator,
# OpenMP's waits at barriers).
import mlrecipes  # noqa: F401

# isort: split
import mlflow
import xgboost as xgb
from omegaconf import OmegaConf

from mlrecipes import explain, lifecycle, recipe
from mlrecipes.data import tabular
from mlrecipes.errors import UserError, require
from mlrecipes.sweep import pruning

# Objective and evaluation metrics by kind of target; early stopping watches the last metric.
# The distribution a model pins: xgboost-cpu in the CPU environment (requirements.lock), xgboost in the GPU one.
XGBOOST = recipe.installed_distribution("xgboost-cpu", "xgboost")
OBJECTIVES = {
    "multiclass": ("multi:softprob", ["mlogloss", "merror"]),
    "binary": ("binary:logistic", ["logloss", "error"]),
    "regression": ("reg:squarederror", ["rmse"]),
}


class TestCurve(xgb.callback.TrainingCallback):
    """eval.test_every: test accuracy every N rounds (benchmarks only; off by default)."""

    def __init__(self, curve: recipe.TestCurve):
        super().__init__()
        self.curve = curve

    def after_iteration(self, model, epoch, evals_log) -> bool:
        if self.curve.due(epoch + 1):
            self.curve.snapshot(epoch + 1)
        return False  # never stops training


def fit(cfg, ds) -> recipe.Trained:
    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    objective, metrics = OBJECTIVES[ds.objective]
    params = {"eval_metric": metrics, **OmegaConf.to_container(m.params), "objective": objective, "seed": cfg.seed}
    if ds.objective == "multiclass":
        params["num_class"] = ds.num_classes
    X_train, X_val = tabular(ds, ds.X_train), tabular(ds, ds.X_val)
    # the test curve's clock starts here: building the DMatrix is training work
    curve = recipe.TestCurve(cfg, ds, prepare=lambda X: xgb.DMatrix(tabular(ds, X), enable_categorical=True))
    # QuantileDMatrix keeps the histogram bins (about a byte per value) instead of a float copy of
    # the table; string columns train as categoricals (enable_categorical), missing values stay NaN.
    # It reads the data through a ctypes callback: a signal there waits until it returns.
    try:
        with lifecycle.signals_deferred():
            dtrain = xgb.QuantileDMatrix(X_train, label=ds.y_train, enable_categorical=True,
                                         max_bin=int(params.get("max_bin", 256)))
            dval = xgb.QuantileDMatrix(X_val, label=ds.y_val, enable_categorical=True,
                                       ref=dtrain, max_bin=int(params.get("max_bin", 256)))
    except xgb.core.XGBoostError as exc:
        raise UserError(f"xgboost rejected the data: {str(exc).splitlines()[0]}") from None
    del X_train  # the DMatrix holds the bins; the frame is not read again
    ds.release_training_rows()
    # Autolog records the xgboost params and the per-iteration metrics of the evals;
    # the recipe logs the model itself (with signature) and the datasets. Its weight importance
    # only for tables: MNIST's 784-bar chart says nothing and costs ~6 s to draw (explain: by gain).
    importance = ["weight"] if dtrain.num_col() <= recipe.MAX_IMPORTANCE_FEATURES else []
    mlflow.xgboost.autolog(log_models=False, log_datasets=False, silent=True, importance_types=importance)
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=int(m.num_boost_round),
            # early stopping watches the last one; the training rows only on request (eval.train_curve)
            evals=[*([(dtrain, "train")] if cfg.eval.train_curve else []), (dval, "validation")],
            early_stopping_rounds=int(m.early_stopping_rounds),
            verbose_eval=int(m.verbose_eval),
            callbacks=[*pruning.callbacks("xgboost"),  # inside a sweep only: report rounds, prune
                       *([TestCurve(curve)] if curve.every else [])],
        )
    except xgb.core.XGBoostError as exc:  # bad params surface here, e.g. max_depth=-1
        raise UserError(f"xgboost rejected the parameters: {str(exc).splitlines()[0]}") from None
    curve.finish(lambda rounds, X: booster.predict(X, iteration_range=(0, rounds)))
    # What the task chose (autolog leaves them out; the rest are the config's model.params.*), as on a cluster.
    mlflow.log_params({k: params[k] for k in ("objective", "num_class") if k in params})
    best = booster[: booster.best_iteration + 1]  # keep only the early-stopped trees
    # Total gain (LightGBM's "gain") and split counts per feature, 0 for a feature never split on;
    # contributions of a test sample (TreeSHAP).
    features = best.feature_names or [f"f{i}" for i in range(best.num_features())]
    gain, splits = best.get_score(importance_type="total_gain"), best.get_score(importance_type="weight")
    explain.explain(cfg, ds, features, [gain.get(f, 0.0) for f in features], [splits.get(f, 0) for f in features],
                    lambda X: best.predict(xgb.DMatrix(X, enable_categorical=True), pred_contribs=True))

    def log_model(**kw):
        if ds.feature_names is None:  # images: the xgboost flavor as is
            return mlflow.xgboost.log_model(best, model_format="ubj", **kw)
        return recipe.log_table_model("xgboost", best, ds, **kw)

    return recipe.Trained(
        prepare=lambda X: tabular(ds, X),
        requirements=(XGBOOST, "numpy", "scipy", "pandas", "scikit-learn"),  # what inference finds
        predict=lambda X: best.predict(xgb.DMatrix(X, enable_categorical=True)),
        log_model=log_model,
    )


def fit_dask(cfg, cd, client):
    """compute=dask: xgboost.dask on the cluster's partitions (mlrecipes.compute.boost); the same model logged."""
    from mlrecipes.compute import boost, steps

    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    booster, params = boost.xgboost(client, cd, m, cfg.seed, train_curve=bool(cfg.eval.train_curve))
    mlflow.log_params({k: params[k] for k in ("objective", "num_class", "max_bin") if k in params})
    return steps.ClusterTrained("xgboost", booster,
                                requirements=(XGBOOST, "numpy", "scipy", "pandas", "scikit-learn"))


if __name__ == "__main__":
    recipe.main(__file__, fit, fit_dask=fit_dask)
