"""Tracking glue: config as params + config.yaml, tags, dataset inputs."""

from __future__ import annotations

import subprocess
import warnings

import mlflow
from omegaconf import DictConfig, OmegaConf

from mlrecipes.airflow_context import airflow_tags
from mlrecipes.config import REPO_ROOT, flatten
from mlrecipes.data import Dataset


def log_config(cfg: DictConfig) -> None:
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
    }
    tags.update(airflow_tags())
    mlflow.set_tags(tags)


def log_dataset(ds: Dataset) -> None:
    """Record what was trained and tested on, with MLflow's digest of the rows."""
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-file dataset source twice and warns on every path.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        _log_dataset(ds)


def _log_dataset(ds: Dataset) -> None:
    if ds.frame is not None:
        target = [c for c in ds.frame.columns if str(c) not in (ds.feature_names or [])]
        source = mlflow.data.from_pandas(
            ds.frame, source=ds.source, targets=str(target[0]) if target else None, name=ds.name
        )
        mlflow.log_input(source, context="source")
    train = mlflow.data.from_numpy(
        ds.X_train, targets=ds.y_train, source=ds.source, name=f"{ds.name}-train"
    )
    test = mlflow.data.from_numpy(ds.X_test, targets=ds.y_test, source=ds.source, name=f"{ds.name}-test")
    mlflow.log_input(train, context="training")
    mlflow.log_input(test, context="evaluation")
    mlflow.log_params(
        {"data.rows.train": len(ds.y_train), "data.rows.validation": len(ds.y_val), "data.rows.test": len(ds.y_test)}
    )
