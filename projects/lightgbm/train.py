"""LightGBM on the shared recipe: only the model code lives here."""

import lightgbm as lgb
import mlflow
from omegaconf import OmegaConf

from mlrecipes import recipe
from mlrecipes.data import tabular
from mlrecipes.errors import UserError, require


def fit(cfg, ds) -> recipe.Trained:
    m = cfg.model
    require(m.num_boost_round >= 1, f"model.num_boost_round must be >= 1, got {m.num_boost_round}")
    require(m.early_stopping_rounds >= 1, "model.early_stopping_rounds must be >= 1")
    # Autolog records the lightgbm params and the per-iteration train/validation metrics;
    # the recipe logs the model itself (with signature) and the datasets.
    mlflow.lightgbm.autolog(log_models=False, log_datasets=False, silent=True)
    train = lgb.Dataset(tabular(ds, ds.X_train), label=ds.y_train)
    val = lgb.Dataset(tabular(ds, ds.X_val), label=ds.y_val, reference=train)
    params = {
        **OmegaConf.to_container(m.params),
        "objective": "multiclass",
        "num_class": ds.num_classes,
        "seed": cfg.seed,
    }
    try:
        booster = lgb.train(
            params,
            train,
            num_boost_round=int(m.num_boost_round),
            valid_sets=[train, val],
            valid_names=["train", "validation"],
            callbacks=[
                lgb.early_stopping(int(m.early_stopping_rounds), first_metric_only=True, verbose=True),
                lgb.log_evaluation(int(m.log_every)),
            ],
        )
    except lgb.basic.LightGBMError as exc:  # bad params surface here, e.g. num_leaves=1
        raise UserError(f"lightgbm rejected the parameters: {str(exc).splitlines()[0]}") from None

    return recipe.Trained(
        prepare=lambda X: tabular(ds, X),
        requirements=("lightgbm", "numpy", "scipy", "pandas", "scikit-learn"),  # what inference finds
        predict_proba=lambda X: booster.predict(X, num_iteration=booster.best_iteration),
        # save_model keeps trees up to best_iteration, so the logged model is the early-stopped one.
        log_model=lambda **kw: mlflow.lightgbm.log_model(booster, **kw),
    )


if __name__ == "__main__":
    recipe.main(__file__, fit)
