"""Tracking glue: experiments, config as params + config.yaml, tags, dataset inputs."""

from __future__ import annotations

import re
import subprocess
import time
import warnings
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from mlrecipes import locks
from mlrecipes.airflow_context import airflow_tags
from mlrecipes.config import flatten
from mlrecipes.data import Dataset
from mlrecipes.paths import REPO_ROOT

# MLflow 3's UI opens an experiment on the kind this tag names; without it (or with an inferred
# kind) it may open the GenAI overview (traces, evaluations), which is empty for training runs.
# "custom_model_development" (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT in MLflow 3.17's UI) is
# "machine learning": the runs table, charts and Compare.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# The UI's guessed kinds (its *_INFERRED and NO_INFERRED_TYPE values), not a user's choice: replaced.
_GUESSED_KINDS = {"genai_development_inferred", "custom_model_development_inferred", "no_inferred_type"}


def ensure_experiment(client, name: str) -> str:
    """The id of experiment `name`, created if missing, tagged to open on its runs table.

    An experiment whose kind a user chose keeps it. Two processes may create the same experiment
    at once: the one that loses reads the winner's."""
    from mlflow.exceptions import MlflowException

    for _ in range(3):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(EXPERIMENT_KIND_TAG) in (None, "", *_GUESSED_KINDS):
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return exp.experiment_id
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException as exc:  # created meanwhile by another process (or a real failure)
            error = exc
            time.sleep(0.5)
    raise error


# Config keys whose values never reach params, tags or artifacts (credentials in storage_options).
_SECRET = re.compile(r"(secret|password|token|credential|access_key|key_id)", re.IGNORECASE)


def redacted(cfg: DictConfig) -> DictConfig:
    """A copy with every value under a secret-looking key replaced by ***."""
    def walk(node):
        if isinstance(node, dict):
            return {k: ("***" if _SECRET.search(str(k)) and v not in (None, "") else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return OmegaConf.create(walk(OmegaConf.to_container(cfg, resolve=True)))


def log_config(cfg: DictConfig) -> None:
    cfg = redacted(cfg)
    params = flatten(cfg)
    items = list(params.items())
    for start in range(0, len(items), 100):  # MLflow caps one batch at 100 params
        mlflow.log_params(dict(items[start : start + 100]))
    mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")


def git_state() -> dict[str, str]:
    """Commit of the checkout the shared code comes from, and whether it had local edits."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlrecipes.git.commit": commit, "mlrecipes.git.dirty": str(bool(dirty)).lower()}


def set_tags(cfg: DictConfig) -> None:
    tags = {
        "mlrecipes.project": cfg.project,
        "mlrecipes.framework": cfg.framework,
        "mlrecipes.variant": cfg.variant,
        "mlrecipes.dataset": cfg.data.name,
        "mlflow.runName": f"{cfg.project}-{cfg.variant}",
        **git_state(),
        # The lock the environment was built from (`mlflow run` starts the entry point in the project's directory).
        **locks.run_tags(Path.cwd()),
    }
    tags.update(airflow_tags())
    mlflow.set_tags(tags)


def log_dataset(ds: Dataset) -> None:
    """Record what was trained and tested on, with MLflow's digest of the rows."""
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-file dataset source twice and warns on every path.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        # The dataset record's schema (an integer-coded class target): advice meant for model signatures.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        _log_dataset(ds)


def digest(frame) -> str:
    """A digest of every row, vectorised (pandas' row hashes). MLflow's own hashes the first 10,000
    rows but maps `type` over every cell first: 35 s and 1.2 GB more for a 3.5 M-row split."""
    import hashlib

    import pandas as pd

    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(rows.tobytes() + repr(list(frame.columns)).encode()).hexdigest()[:8]


def schema(frame):
    """The schema MLflow's PandasDataset infers for `frame`, without its walk over every value of a
    categorical (a list of 3.5 M strings, each typed: ~20 s of a 5 M-row run): a categorical's type
    is its categories', any other column's its dtype's; a column is required when no value is missing."""
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    specs = []
    for name in frame.columns:
        column = frame[name]
        missing = column.isna()
        sample = column  # MLflow's own inference: a column with no value, an object column
        if isinstance(column.dtype, pd.CategoricalDtype) and not missing.all():
            sample = pd.Series(column.cat.categories)
        elif column.dtype.kind != "O":
            sample = column.iloc[:1]  # typed by its dtype alone
        (spec,) = infer_signature(pd.DataFrame({name: sample})).inputs.inputs
        specs.append(ColSpec(spec.type, name, required=not missing.any()))
    return Schema(specs)


def _log_dataset(ds: Dataset) -> None:
    if ds.feature_names is None:  # images
        inputs = [(mlflow.data.from_numpy(X, targets=y, source=ds.source, name=f"{ds.name}-{part}"), context)
                  for X, y, part, context in ((ds.X_train, ds.y_train, "train", "training"),
                                              (ds.X_test, ds.y_test, "test", "evaluation"))]
    else:
        # The digest covers each split's rows with their target; the source URI is the real table,
        # and the Delta version and the filter travel as tags of the input.
        tags = {k.removeprefix("data.source."): str(v) for k, v in ds.params.items() if k.startswith("data.source.")}
        inputs = []
        for X, y, part, context in ((ds.X_train, ds.y_train, "train", "training"),
                                    (ds.X_val, ds.y_val, "validation", "validation"),
                                    (ds.X_test, ds.y_test, "test", "evaluation")):
            frame = X.assign(**{ds.target: y})  # pandas' copy-on-write: no copy of the features
            dataset = mlflow.data.from_pandas(frame, source=ds.source, targets=ds.target,
                                              name=f"{ds.name}-{part}", digest=digest(frame))
            dataset.schema = schema(frame)  # its `schema` is a cached_property: set, it is not inferred
            inputs.append((dataset, context))
    for dataset, context in inputs:
        mlflow.log_input(dataset, context=context, tags=tags if ds.feature_names is not None else None)
    mlflow.log_params({
        **ds.params,
        "data.rows.train": len(ds.y_train), "data.rows.validation": len(ds.y_val), "data.rows.test": len(ds.y_test),
    })


def log_features(ds: Dataset) -> None:
    """A table's window features: the definition the model carries, as `features.yaml`, and the
    names (`features.names`), their count and the history they need (`features.lookback`) as params;
    the fitted transform's class (`features.transform.class`). Nothing for a table without them."""
    definition = getattr(ds, "feature_set", None)
    transform = getattr(ds, "transform", None)
    if definition:
        import yaml

        from mlrecipes.features import FeatureSet

        fs = FeatureSet.from_dict(definition)
        mlflow.log_text(yaml.safe_dump(definition, sort_keys=False), "features.yaml")
        names = ",".join(fs.names)  # MLflow keeps 6000 characters of a param; features.yaml has them all
        mlflow.log_params({"features.names": names if len(names) <= 6000 else names[:5996] + ",...",
                           "features.count": len(fs),
                           "features.lookback": str(fs.lookback())})
    if transform is not None:
        kind = type(transform)
        mlflow.log_param("features.transform.class", f"{kind.__module__}.{kind.__qualname__}")
