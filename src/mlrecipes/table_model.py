"""The pyfunc of a gradient-boosted model trained on a table (an MLflow "model from code").

Why not the xgboost / lightgbm flavor's own pyfunc: a scorer hands over raw rows, where a
categorical feature is a string column, and MLflow's schema enforcement delivers strings as
objects. Both boosters need pandas categoricals with the *training* categories to apply their
categorical splits (and a category never seen in training must become missing, not a crash);
the flavors' pyfuncs pass the frame through untouched and fail. This file applies exactly that
typing, then the native booster, and returns a frame a scorer can write as is:
`prediction` (the class label, or the value for regressors) and `proba_<class>` per class.

It is copied into the model by `mlflow.pyfunc.log_model(python_model=<this file>)`, so it must
not import mlrecipes: a model loads wherever MLflow and the booster's library are installed.
The booster is a plain artifact in its library's own format (booster.ubj / booster.txt).

A model trained with window features (mlrecipes.features) carries their definition in its config
(`feature_set`): scoring reads it from here, never from today's config, computes the features over
the slice and the history before it, and hands them over as columns. The model itself does not
compute them: a window needs rows before the ones being scored. A fitted transform
(features.transform) is an artifact (`transform`, skops) this file applies itself: float32 columns
in, the transformer, float32 out, as the recipe applied it to the training rows.
"""


import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


def typed(frame: pd.DataFrame, features: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Feature columns in training order: numbers as float32, strings as the training categoricals."""
    return pd.DataFrame({
        name: _categorical(frame[name], categories[name]) if name in categories
        else pd.to_numeric(frame[name], errors="raise").astype(np.float32)
        for name in features
    }, index=frame.index)


def _categorical(column: pd.Series, categories: list[str]) -> pd.Categorical:
    """A category never seen in training becomes a missing value (the boosters' own handling)."""
    strings = column.astype("string")  # vectorised: numbers become their text, missing stays missing
    return pd.Categorical(strings.where(strings.isin(categories)), categories=categories)


def output(raw: np.ndarray, task: str, class_names: list[str]) -> pd.DataFrame:
    """Booster output -> `prediction` (+ `proba_<class>` per class for classifiers)."""
    raw = np.asarray(raw, dtype=np.float64)
    if task == "regression":
        return pd.DataFrame({"prediction": raw.reshape(-1)})
    proba = raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])  # binary: P(positive class)
    out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in class_names])
    out.insert(0, "prediction", np.asarray(class_names, dtype=object)[proba.argmax(axis=1)])
    return out


def load_transform(path: str, trusted: list[str]):
    """The fitted transformer; `trusted`: the types its training run named (skops loads nothing else)."""
    import skops.io as sio

    return sio.load(path, trusted=list(trusted))


def transformed(frame: pd.DataFrame, transformer, columns: list[str]) -> pd.DataFrame:
    """`columns` of a typed frame through the fitted transformer, as float32."""
    out = frame.copy()
    values = np.asarray(transformer.transform(frame[columns]), dtype=np.float32)
    for i, name in enumerate(columns):
        out[name] = values[:, i]
    return out


def load_booster(framework: str, path: str):
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(path)
        return booster
    import lightgbm

    return lightgbm.Booster(model_file=path)


def predict_raw(framework: str, booster, frame: pd.DataFrame) -> np.ndarray:
    if framework == "xgboost":
        import xgboost

        return booster.predict(xgboost.DMatrix(frame, enable_categorical=True))
    return booster.predict(frame)


class TableModel(PythonModel):
    def load_context(self, context):
        config = context.model_config
        self.framework, self.task = config["framework"], config["task"]
        self.features, self.categories = list(config["features"]), dict(config["categories"])
        self.class_names = list(config.get("class_names") or [])
        self.booster = load_booster(self.framework, context.artifacts["booster"])
        self.feature_set = config.get("feature_set")  # read by scoring (mlrecipes.scoring.model)
        spec = config.get("transform") or {}
        self.transform_columns = list(spec.get("columns") or [])
        self.transformer = (load_transform(context.artifacts["transform"], spec.get("trusted") or [])
                            if self.transform_columns else None)

    # The hint: MLflow warns about a `predict` without one. A DataFrame is a hint it infers no schema
    # from and wraps nothing for, so the logged signature still validates the input.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = typed(model_input, self.features, self.categories)
        if self.transformer is not None:
            frame = transformed(frame, self.transformer, self.transform_columns)
        out = output(predict_raw(self.framework, self.booster, frame), self.task, self.class_names)
        out.index = model_input.index
        return out


mlflow.models.set_model(TableModel())
