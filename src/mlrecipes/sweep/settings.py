"""A sweep's settings: the sweep config checked (objective, direction, trials, budget, sampler,
pruner, search space), the study's name and where Optuna stores it.

Storage: the study lives beside the tracking store, `<db>.optuna.db` next to a `sqlite:///<db>.db`
store; for a tracking server set `MLRECIPES_OPTUNA_STORAGE` (any Optuna storage URL) or
`sweep.storage`. The study name is deterministic: `<project>-<variant>-<sweep>-<data.name>` (plus
the Airflow DAG run id for scheduled runs, so a retry resumes and next week's run starts afresh),
or `-P study=NAME`. Trials already finished in the study count toward `n_trials`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlrecipes.errors import UserError
from mlrecipes.store import absolute_tracking_uri, sqlite_path
from mlrecipes.sweep.space import Param, parse_space

STORAGE_ENV = "MLRECIPES_OPTUNA_STORAGE"
SWEEP_KEYS = {"objective", "direction", "n_trials", "n_jobs", "timeout_minutes", "sampler", "pruner", "params",
              "storage"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
# The metrics the recipe logs on the validation split, by task (evaluate.scores), and which way is better.
VALIDATION = {
    "classification": {"accuracy": "maximize", "macro_f1": "maximize", "log_loss": "minimize",
                       "roc_auc": "maximize", "pr_auc": "maximize"},
    "regression": {"rmse": "minimize", "mae": "minimize", "r2": "maximize"},
}
BINARY_ONLY = ("roc_auc", "pr_auc")
DEFAULT_OBJECTIVE = {"classification": "val_log_loss", "regression": "val_rmse"}


@dataclass
class Settings:
    name: str  # the sweep config's name (conf/sweep/<name>.yaml)
    objective: str
    direction: str
    n_trials: int
    n_jobs: int
    timeout_s: float | None
    sampler: dict
    pruner: dict
    space: list[Param]
    storage: str
    study: str
    raw: dict = field(default_factory=dict)

    def fingerprint(self, base_cfg) -> str:
        """What a study's trials must share to be compared: space, objective, base config (not the gate)."""
        from omegaconf import OmegaConf

        base = OmegaConf.to_container(base_cfg, resolve=True)
        base.pop("gate", None)
        doc = {"space": {p.key: p.expression for p in self.space}, "objective": self.objective,
               "direction": self.direction, "base": base}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def positive_int(text, what: str) -> int:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a positive integer, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise UserError(f"{what} must be a positive integer, got {text!r}")
    return int(value)


def settings(sweep_name: str, sweep_cfg, base_cfg, opts: dict) -> Settings:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(sweep_cfg, resolve=True) or {}
    unknown = sorted(set(raw) - SWEEP_KEYS)
    if unknown:
        raise UserError(f"sweep {sweep_name}: unknown key(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(SWEEP_KEYS))}")
    task = str(base_cfg.get("task") or "classification")
    objective = str(raw.get("objective") or DEFAULT_OBJECTIVE[task])
    known = VALIDATION.get(task, {})
    metric = objective.removeprefix("val_")
    if objective.startswith("test_"):
        raise UserError(f"objective {objective!r} is a test-set metric: a sweep optimises a validation metric "
                        f"({', '.join('val_' + m for m in known)}); the test set stays for the final evaluation")
    if not objective.startswith("val_") or metric not in known:
        raise UserError(f"objective {objective!r} is not a metric the recipe logs for a {task} task; "
                        f"valid: {', '.join('val_' + m for m in known)}")
    direction = str(raw.get("direction") or known[metric]).lower()
    if direction not in ("maximize", "minimize"):
        raise UserError(f"sweep direction must be maximize or minimize, got {raw.get('direction')!r}")
    n_trials = positive_int(opts["trials"], "trials") if opts.get("trials") not in (None, "") else \
        positive_int(raw.get("n_trials"), "sweep n_trials")
    n_jobs = positive_int(raw.get("n_jobs", 1), "sweep n_jobs")
    budget = opts.get("budget_minutes")
    if budget in (None, "", "0", "0.0"):
        budget = raw.get("timeout_minutes") or 0
    try:
        minutes = float(budget)
    except (TypeError, ValueError):
        raise UserError(f"budget_minutes must be a number of minutes, got {budget!r}") from None
    if minutes < 0 or not math.isfinite(minutes):
        raise UserError(f"budget_minutes must be >= 0 (0: no budget), got {budget!r}")
    sampler = dict(raw.get("sampler") or {})
    if str(sampler.get("name", "tpe")) not in SAMPLERS:
        raise UserError(f"sweep sampler.name must be one of {', '.join(SAMPLERS)}, got {sampler.get('name')!r}")
    pruner = dict(raw.get("pruner") or {})
    if str(pruner.get("name", "none")) not in PRUNERS:
        raise UserError(f"sweep pruner.name must be one of {', '.join(PRUNERS)}, got {pruner.get('name')!r}")
    space = parse_space(raw.get("params"), base_cfg)
    study = opts.get("study") or default_study_name(base_cfg, sweep_name)
    storage = optuna_storage(raw.get("storage"))
    return Settings(sweep_name, objective, direction, n_trials, n_jobs, minutes * 60 or None, sampler, pruner,
                    space, storage, study, raw)


def default_study_name(base_cfg, sweep_name: str) -> str:
    """`<project>-<variant>-<sweep>-<data.name>`; under Airflow also the DAG run, so a retry of that
    run resumes its study and the next scheduled run starts a fresh one on newer data."""
    name = f"{base_cfg.project}-{base_cfg.variant}-{sweep_name}-{base_cfg.data.name}"
    dag_run = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    return f"{name}-{os.environ.get('AIRFLOW_CTX_DAG_ID', 'airflow')}-{dag_run}" if dag_run else name


def optuna_storage(configured: str | None) -> str:
    """$MLRECIPES_OPTUNA_STORAGE, else `sweep.storage`, else `<db>.optuna.db` beside an SQLite store."""
    import mlflow

    explicit = os.environ.get(STORAGE_ENV) or configured
    if explicit:
        return explicit
    uri = mlflow.get_tracking_uri()
    db = sqlite_path(absolute_tracking_uri(uri, Path.cwd()))
    if db is not None:
        return f"sqlite:///{db.resolve().with_name(db.stem + '.optuna.db')}"
    raise UserError(f"no Optuna storage for the tracking store {uri}: set {STORAGE_ENV} to an Optuna storage "
                    "URL (e.g. postgresql://user:password@host/optuna or sqlite:////shared/optuna.db)")


def redact_url(url: str) -> str:
    return re.sub(r"//([^/@:]+):[^/@]*@", r"//\1:***@", url)
