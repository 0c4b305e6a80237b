"""XGBoost on the shared recipe: only the model code lives here."""

import mlflow
import xgboost as xgb
from omegaconf import OmegaConf

from mlrecipes import recipe
from mlrecipes.data import tabular
from mlrecipes.errors import UserError, require

MAX_IMPORTANCE_FEATURES = 100


def fit(cfg, ds) -> recipe.Trained:
    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    dtrain = xgb.DMatrix(tabular(ds, ds.X_train), label=ds.y_train)
    dval = xgb.DMatrix(tabular(ds, ds.X_val), label=ds.y_val)
    # Autolog records the xgboost params and the per-iteration train/validation metrics;
    # the recipe logs the model itself (with signature) and the datasets. Feature importance
    # only for tables: MNIST's 784-bar chart says nothing and costs ~6 s to draw.
    importance = ["weight"] if dtrain.num_col() <= MAX_IMPORTANCE_FEATURES else []
    mlflow.xgboost.autolog(log_models=False, log_datasets=False, silent=True, importance_types=importance)
    params = {
        **OmegaConf.to_container(m.params),
        "objective": "multi:softprob",
        "num_class": ds.num_classes,
        "seed": cfg.seed,
    }
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=int(m.num_boost_round),
            evals=[(dtrain, "train"), (dval, "validation")],
            early_stopping_rounds=int(m.early_stopping_rounds),
            verbose_eval=int(m.verbose_eval),
        )
    except xgb.core.XGBoostError as exc:  # bad params surface here, e.g. max_depth=-1
        raise UserError(f"xgboost rejected the parameters: {str(exc).splitlines()[0]}") from None
    best = booster[: booster.best_iteration + 1]  # keep only the early-stopped trees

    return recipe.Trained(
        prepare=lambda X: tabular(ds, X),
        requirements=("xgboost", "numpy", "scipy", "pandas", "scikit-learn"),  # what inference finds
        predict_proba=lambda X: best.predict(xgb.DMatrix(X)),
        log_model=lambda **kw: mlflow.xgboost.log_model(best, model_format="ubj", **kw),
    )


if __name__ == "__main__":
    recipe.main(__file__, fit)
