"""Hyperparameter sweeps: an Optuna search as one parent run with a nested recipe run per trial.

    mlflow run projects/lightgbm -e sweep -P sweep=default -P trials=30 [-P data=... -P overrides=...]
    mlflow run projects/lightgbm -e sweep -P sweep=/abs/path/my_space.yaml   # a search space of one's own
    (the entry point runs: python -m mlrecipes.sweep train.py --sweep default --trials 30 ...)

The search space is config: `projects/<name>/conf/sweep/<sweep>.yaml`, a `params` mapping of config
keys to expressions in Hydra's sweeper vocabulary (`interval(a, b)`, `int(interval(a, b))`,
`range(start, stop, step)`, `choice(a, b, ...)`, `tag(log, interval(a, b))`), read with Hydra's own
override grammar (`hydra.core.override_parser`), plus the objective, direction, number of trials,
threads, time budget, sampler and pruner.

Why Optuna's own API and not Hydra's Optuna sweeper plugin: the plugin is a Hydra *launcher-side*
sweeper. It needs `@hydra.main` and `--multirun`, and it runs every trial as a Hydra job, each job
with its own working directory and its own Hydra run, under Hydra's control of the process. MLflow
Projects give an entry point one process and one run (the one `mlflow run` created); the sweep must
own that run as the parent, open a nested child run per trial, keep the data loaded once, report
per-round values to a pruner from inside the training loop, store the study beside the tracking
store so a killed sweep resumes, and register only the best trial's model at the end. None of
that is reachable through the plugin (which is not installed in the project environments either),
all of it is a few calls of Optuna's API (`create_study(storage=..., load_if_exists=True)`,
`optimize`, `trial.report` / `should_prune`). We keep Hydra's *vocabulary* for the search space,
so a lightning-hydra-template user reads the same expressions.

One process: trials run in this process (threads when `n_jobs` > 1), so the data is read once,
and every trial is a normal recipe run (`recipe.steps`) inside a nested MLflow run: config, data
digest, metrics, model. A trial that fails (a sampled value the library rejects, an exception) is
a FAILED child and a FAIL trial; the sweep goes on. A trial the pruner stops ends FINISHED with
the tag `mlrecipes.sweep.state=pruned` and no model. Only the best trial's model is registered and
gated. What kills the process (SIGKILL, out of memory) kills the sweep: its study survives in the
storage, and the next start (an Airflow retry, the same command) resumes it.

Storage: the study lives beside the tracking store, `<db>.optuna.db` next to a `sqlite:///<db>.db`
store; for a tracking server set `MLRECIPES_OPTUNA_STORAGE` (any Optuna storage URL) or
`sweep.storage`. The study name is deterministic: `<project>-<variant>-<sweep>-<data.name>` (plus
the Airflow DAG run id for scheduled runs, so a retry resumes and next week's run starts afresh),
or `-P study=NAME`. Trials already finished in the study count toward `n_trials`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from mlrecipes.errors import EXIT_TERMINATED, EXIT_USER_ERROR, UserError, exit_now, one_line, readable_output

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
COUNTED = "mlrecipes.outcome"  # trial user attribute: set when the trial ran to an end of its own
HEARTBEAT_S, GRACE_S = 30, 90  # a trial whose process died is failed (and not counted) after GRACE_S


# --------------------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Param:
    key: str  # config key, as in the override (`model.params.num_leaves`)
    add: bool  # `+key`: a key the config does not have yet (e.g. a library parameter left at its default)
    expression: str
    distribution: object | None  # an optuna distribution; None for a fixed value
    fixed: str | None = None  # the override's value text, for fixed values

    @property
    def name(self) -> str:
        return self.key


def parse_space(params, base_cfg) -> list[Param]:
    """Each `key: expression` through Hydra's override grammar, checked against the composed config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, OverrideType, RangeSweep
    from hydra.errors import HydraException

    if not params:
        raise UserError("the sweep's params are empty: give at least one `config.key: interval(a, b)`")
    parser = OverridesParser.create()
    out = []
    for raw_key, expression in dict(params).items():
        text = f"{raw_key}={_expression_text(expression)}"
        try:
            override = parser.parse_override(text)
        except HydraException as exc:
            raise UserError(f"sweep parameter {raw_key}: cannot parse {expression!r}: {one_line(exc)}") from None
        key, add = override.key_or_group, override.type == OverrideType.ADD
        if override.type not in (OverrideType.CHANGE, OverrideType.ADD) or override.package:
            raise UserError(f"sweep parameter {raw_key}: only `key` or `+key` may be swept")
        present = _has_key(base_cfg, key)
        if not add and not present:
            raise UserError(f"sweep parameter {key!r} is not in the config of {base_cfg.project}; "
                            f"check the key or write `+{key}` to add a new one")
        if add and present:
            raise UserError(f"sweep parameter +{key}: the config already has {key!r}; drop the `+`")
        value = override.value()
        if not override.is_sweep_override():
            out.append(Param(key, add, str(expression), None, override.get_value_element_as_str()))
            continue
        text = _expression_text(expression)
        out.append(Param(key, add, text, _distribution(key, text, value, override, ChoiceSweep, IntervalSweep,
                                                        RangeSweep)))
    return out


def _expression_text(expression) -> str:
    if isinstance(expression, bool):
        return str(expression).lower()
    return "null" if expression is None else str(expression)


def _has_key(cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    node, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, node) if node else cfg
    return parent is not None and OmegaConf.is_dict(parent) and leaf in parent


def _distribution(key, text, value, override, ChoiceSweep, IntervalSweep, RangeSweep):
    import optuna.distributions as d

    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator())
        bad = [c for c in choices if not isinstance(c, (str, int, float, bool))]
        if bad:
            raise UserError(f"sweep parameter {key}: choices must be numbers, strings or booleans, got {bad[0]!r}")
        if not choices:
            raise UserError(f"sweep parameter {key}: empty choice")
        return d.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        items = list(override.sweep_iterator())
        if not items:
            raise UserError(f"sweep parameter {key}: {text} is an empty range")
        step = value.step
        if any(isinstance(x, float) for x in (value.start, value.stop, step)):
            return d.FloatDistribution(float(items[0]), float(items[-1]), step=float(step)) if len(items) > 1 \
                else d.CategoricalDistribution([float(items[0])])
        # Hydra's range stops before `stop`, as Python's does; optuna's high is inclusive: the last item.
        return d.IntDistribution(int(items[0]), int(items[-1]), step=int(step)) if len(items) > 1 \
            else d.CategoricalDistribution([int(items[0])])
    if isinstance(value, IntervalSweep):
        start, end, log = value.start, value.end, "log" in value.tags
        if not start < end:
            raise UserError(f"sweep parameter {key}: interval({start}, {end}) is an empty range")
        if log and start <= 0:
            raise UserError(f"sweep parameter {key}: a log interval must start above 0, got {start}")
        if isinstance(start, int) and isinstance(end, int):  # int(interval(a, b))
            return d.IntDistribution(start, end, log=log)
        return d.FloatDistribution(float(start), float(end), log=log)
    raise UserError(f"sweep parameter {key}: unsupported sweep {text}")


def suggest(trial, p: Param):
    import optuna.distributions as d

    dist = p.distribution
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(p.name, list(dist.choices))
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(p.name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(p.name, dist.low, dist.high, step=dist.step, log=dist.log)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")


def override_text(p: Param, value) -> str:
    """`key=value` (or `+key=value`) for Hydra's compose, the value written as the grammar reads it."""
    if p.distribution is None:
        text = p.fixed
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif _PLAIN.fullmatch(str(value)) and str(value).lower() not in ("true", "false", "null", "nan", "inf"):
        text = str(value)
    else:
        text = "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{'+' if p.add else ''}{p.key}={text}"


# --------------------------------------------------------------------------- the sweep's settings


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
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):].partition("?")[0]).resolve()
        return f"sqlite:///{db.with_name(db.stem + '.optuna.db')}"
    raise UserError(f"no Optuna storage for the tracking store {uri}: set {STORAGE_ENV} to an Optuna storage "
                    "URL (e.g. postgresql://user:password@host/optuna or sqlite:////shared/optuna.db)")


def redact_url(url: str) -> str:
    return re.sub(r"//([^/@:]+):[^/@]*@", r"//\1:***@", url)


# --------------------------------------------------------------------------- pruning inside the libraries


class _Current(threading.local):
    trial = None  # the optuna trial this thread is training, if any
    sign = 1.0  # +1: the study minimises; -1: it maximises (the reported losses are negated)
    every = 1
    pruning = False


_current = _Current()
_stop = threading.Event()  # set on SIGTERM: trials in other threads stop at their next round


class Interrupted(KeyboardInterrupt):
    """A trial stopped because the sweep was terminated (optuna records it FAIL; it is not counted)."""


def _report(step: int, loss: float) -> None:
    """Report one round's validation loss to the trial; raise TrialPruned when the pruner says so."""
    if _stop.is_set():
        raise Interrupted()
    trial = _current.trial
    if trial is None or not _current.pruning or step % _current.every or not math.isfinite(loss):
        return
    import optuna

    trial.report(_current.sign * float(loss), step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step}")


def pruning_callbacks(framework: str) -> list:
    """The library's callback that reports per-round / per-epoch validation loss to the sweep's trial.

    Empty outside a sweep, so a project's train.py adds it unconditionally:
    `callbacks=[..., *sweep.pruning_callbacks("lightgbm")]`. Reports the loss the library's early
    stopping watches (lower is better), negated when the study maximises, so the pruner compares
    trials in the study's direction whatever the objective is. A minimal stand-in for
    optuna-integration's callbacks (not installed in the project environments).
    """
    if _current.trial is None:
        return []
    if framework == "lightgbm":
        def lightgbm_pruning(env) -> None:
            loss = next((r[2] for r in env.evaluation_result_list if r[0] == "validation"), None)
            if loss is not None:
                _report(env.iteration + 1, loss)

        return [lightgbm_pruning]
    if framework == "xgboost":
        import xgboost as xgb

        class XGBoostPruning(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log) -> bool:
                metrics = evals_log.get("validation") or {}
                if metrics:
                    _report(epoch + 1, float(next(iter(metrics.values()))[-1]))
                return False

        return [XGBoostPruning()]
    if framework == "keras":
        import keras

        class KerasPruning(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs and "val_loss" in logs:
                    _report(epoch + 1, float(logs["val_loss"]))

        return [KerasPruning()]
    if framework == "pytorch":  # a plain function the training loop calls once per epoch
        return [_report]
    raise ValueError(f"no pruning callback for {framework!r}")


# --------------------------------------------------------------------------- the sweep


def load_fit(train_file: Path):
    """The project's `fit`, from its train.py (imported as a module, so its `__main__` block does not run)."""
    import importlib.util

    sys.path.insert(0, str(train_file.parent))  # a project's own modules (torch_mnist's models.py)
    spec = importlib.util.spec_from_file_location("train", train_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module.fit


OPTIONS = ("--sweep", "--trials", "--budget-minutes", "--study")


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    opts, rest, words = {}, [], iter(argv)
    for word in words:
        if word in OPTIONS:
            opts[word[2:].replace("-", "_")] = next(words, "").strip()
        else:
            rest.append(word)
    return opts, rest


def main(argv: list[str] | None = None) -> None:
    readable_output()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit("usage: python -m mlrecipes.sweep <project>/train.py --sweep NAME [--trials N] "
                 "[--budget-minutes M] [--study NAME] [key=value ...] [--overrides 'a=1 b=2']")
    train_file = Path(argv[0]).resolve()
    exit_now(run(train_file, argv[1:]))


def run(train_file: Path, argv: list[str]) -> int:
    import mlflow

    from mlrecipes import recipe

    recipe.install_signal_handlers()
    mlflow.set_system_metrics_sampling_interval(recipe.SYSTEM_METRICS_INTERVAL_S)
    parent = mlflow.start_run(log_system_metrics=True)  # the run `mlflow run` created
    run_id = parent.info.run_id
    sweep = None
    outcome = ("FINISHED", 0, None)
    try:
        sweep = Sweep(train_file, run_id)
        sweep.prepare(argv)
        rc = sweep.optimize()
        if rc:
            outcome = ("FAILED", rc, sweep.failure)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        outcome = ("FAILED", EXIT_USER_ERROR, str(exc))
    except (recipe.Terminated, KeyboardInterrupt):
        _stop.set()
        print(f"error: sweep run {run_id} terminated", file=sys.stderr, flush=True)
        outcome = ("KILLED", EXIT_TERMINATED, "terminated by a signal")
    except Exception as exc:
        traceback.print_exc()
        outcome = ("FAILED", 1, f"{type(exc).__name__}: {exc}")
    # After the handlers, as recipe.run: a traceback's frames may hold an interrupted store write.
    if outcome[0] == "KILLED" and sweep is not None:
        gc.collect()
        sweep.close_open_children()
    return recipe._end(mlflow, run_id, *outcome)


class Sweep:
    def __init__(self, train_file: Path, run_id: str):
        self.train_file = train_file
        self.project_dir = train_file.parent
        self.run_id = run_id
        self.failure = None
        self._children: dict[int, str] = {}  # trial number -> child run id, while it runs
        self._lock = threading.Lock()
        self._data: dict[str, object] = {}
        self._trial_data: dict[int, str] = {}  # trial number -> its data key
        self._user_errors = 0

    # ---------------------------------------------------------------- before the first trial

    def prepare(self, argv: list[str]) -> None:
        import mlflow
        from omegaconf import OmegaConf, open_dict

        from mlrecipes import config, data, recipe, registry, tracking

        opts, rest = parse_args(argv)
        name = opts.get("sweep") or "default"
        self.overrides = config.parse_argv(rest)
        if name.endswith((".yaml", ".yml")) or "/" in name:  # a search space of one's own: a YAML file
            path = Path(name).expanduser()
            if not path.is_file():
                raise UserError(f"sweep file not found: {path}")
            try:
                sweep_cfg = OmegaConf.load(path)
            except Exception as exc:
                raise UserError(f"cannot read sweep file {path}: {one_line(exc)}") from None
            base = config.compose(self.project_dir, self.overrides)
            name = path.stem
        else:
            full = config.compose(self.project_dir, [*self.overrides, f"+sweep={name}"])
            sweep_cfg = full.sweep
            base = OmegaConf.create(OmegaConf.to_container(full, resolve=True))
            with open_dict(base):
                del base["sweep"]
        self.base = base
        self.settings = s = settings(name, sweep_cfg, base, opts)
        registry.Gate.of(base.gate)  # a gate that cannot be applied fails now, not after the last trial
        task = str(base.get("task") or "classification")
        test_metrics = {f"test_{m}" for m in VALIDATION.get(task, {})}
        if str(base.gate.metric) not in test_metrics:
            raise UserError(f"gate metric {base.gate.metric!r} is not among the metrics the recipe logs for a {task} "
                            f"task ({', '.join(sorted(test_metrics))}): set gate.metric to one of them")

        tracking.set_tags(base)
        fixed = {p.key: p.fixed for p in s.space if p.distribution is None}
        mlflow.set_tags({
            "mlflow.runName": f"{base.project}-{base.variant}-sweep-{name}",
            "mlrecipes.sweep.role": "parent", "mlrecipes.sweep.name": name, "mlrecipes.sweep.study": s.study,
            "mlrecipes.sweep.storage": redact_url(s.storage), "mlrecipes.sweep.objective": s.objective,
        })
        mlflow.log_params({
            "sweep.name": name, "sweep.study": s.study, "sweep.objective": s.objective,
            "sweep.direction": s.direction, "sweep.n_trials": s.n_trials, "sweep.n_jobs": s.n_jobs,
            "sweep.timeout_minutes": (s.timeout_s or 0) / 60,
            "sweep.sampler": json.dumps(s.sampler, sort_keys=True),
            "sweep.pruner": json.dumps(s.pruner, sort_keys=True),
            **{f"sweep.space.{p.key}": p.expression for p in s.space if p.distribution is not None},
            **{f"sweep.fixed.{k}": v for k, v in fixed.items()},
        })
        mlflow.log_text(OmegaConf.to_yaml(sweep_cfg, resolve=True), "sweep/sweep.yaml")
        mlflow.log_text(OmegaConf.to_yaml(tracking.redacted(base), resolve=True), "sweep/base_config.yaml")

        ds = data.load(base.data, task)  # read once; bad data fails here, before any trial
        if s.objective.removeprefix("val_") in BINARY_ONLY and ds.num_classes != 2:
            raise UserError(f"objective {s.objective!r} needs a binary target; {ds.name} has {ds.num_classes} classes")
        self._data[self._data_key(base)] = ds
        tracking.log_dataset(ds)
        self.fit = load_fit(self.train_file)
        self.task = task
        self.study = self._study()
        del recipe

    def _data_key(self, cfg) -> str:
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(cfg.data, resolve=True) + str(cfg.get("task"))

    def _study(self):
        import optuna

        s = self.settings
        optuna.logging.get_logger("optuna")  # sets up optuna's handler
        for handler in logging.getLogger("optuna").handlers:  # a logger's filter misses its children's records
            handler.addFilter(_QuietFailures())
        sqlite = s.storage.startswith("sqlite:///")
        if sqlite:
            Path(s.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Heartbeats: a trial whose process died (SIGKILL, out of memory) is failed by the next
            # sweep of the study after GRACE_S, instead of staying RUNNING for ever.
            with warnings.catch_warnings():  # heartbeats are marked experimental since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    s.storage, engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
                    heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            probe = optuna.create_study(study_name=s.study, storage=storage, direction=s.direction,
                                        load_if_exists=True)
        except Exception as exc:  # a missing driver, an unreachable server, bad credentials
            raise UserError(f"cannot open the Optuna storage {redact_url(s.storage)}: {one_line(exc)}") from None
        fingerprint = s.fingerprint(self.base)
        attrs = probe.user_attrs
        if attrs.get("fingerprint", fingerprint) != fingerprint or probe.direction.name.lower() != s.direction:
            raise UserError(f"study {s.study!r} in {redact_url(s.storage)} was started with another search space, "
                            f"objective or base config ({attrs.get('objective')}): pass -P study=<new name> "
                            "to start a new study")
        if "fingerprint" not in attrs:
            for key, value in (("fingerprint", fingerprint), ("objective", s.objective),
                               ("space", {p.key: p.expression for p in s.space})):
                probe.set_user_attr(key, value)
        existing = len(probe.trials)
        seed = int(s.sampler.get("seed", 42))
        # The same seed in a resumed process would replay the first process's samples: offset it
        # by the trials already in the study (deterministic for a fresh study).
        seed += existing
        if s.sampler.get("name", "tpe") == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(s.sampler.get("n_startup_trials", 10)))
        pruner = optuna.pruners.NopPruner()
        if s.pruner.get("name", "none") == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=int(s.pruner.get("n_startup_trials", 5)),
                                                 n_warmup_steps=int(s.pruner.get("n_warmup_steps", 0)),
                                                 interval_steps=1)
        return optuna.load_study(study_name=s.study, storage=storage, sampler=sampler, pruner=pruner)

    # ---------------------------------------------------------------- the trials

    def counted(self) -> int:
        from optuna.trial import TrialState

        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and t.user_attrs.get(COUNTED)))

    def optimize(self) -> int:
        import mlflow

        s = self.settings
        done = self.counted()
        remaining = max(s.n_trials - done, 0)
        print(f"[sweep] study {s.study} ({redact_url(s.storage)}): {done} trial(s) already finished, "
              f"{remaining} to run of {s.n_trials}; objective {s.direction} {s.objective}", flush=True)
        mlflow.set_tag("mlrecipes.sweep.resumed_from", str(done))
        started = time.perf_counter()
        if remaining:
            def enough(study, trial):  # several sweeps of one study: stop when together they have n_trials
                if self.counted() >= s.n_trials:
                    study.stop()

            self.study.optimize(self.objective, n_trials=remaining, timeout=s.timeout_s, n_jobs=s.n_jobs,
                                catch=(Exception,), callbacks=[enough], gc_after_trial=True)
        mlflow.log_metric("sweep_seconds", time.perf_counter() - started)
        return self.finish()

    def objective(self, trial) -> float:
        import mlflow
        import optuna

        from mlrecipes import config, data, recipe

        s = self.settings
        values = {p.key: suggest(trial, p) for p in s.space if p.distribution is not None}
        overrides = [*self.overrides, *(override_text(p, values.get(p.key)) for p in s.space)]
        child = mlflow.start_run(experiment_id=mlflow.get_run(self.run_id).info.experiment_id,
                                 parent_run_id=self.run_id, nested=True)
        child_id = child.info.run_id
        with self._lock:
            self._children[trial.number] = child_id
        trial.set_user_attr("mlflow_run_id", child_id)
        tags = {"mlrecipes.sweep.role": "trial", "mlrecipes.sweep.trial": str(trial.number),
                "mlrecipes.sweep.parent": self.run_id, "mlrecipes.sweep.study": s.study,
                "mlrecipes.sweep.name": s.name,
                "mlflow.runName": f"{self.base.project}-{self.base.variant}-trial-{trial.number}"}
        mlflow.set_tags({**tags, "mlrecipes.sweep.state": "running"})  # visible in the UI while it trains
        print(f"[sweep] trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())} (run {child_id})",
              flush=True)
        status, state, error = "FAILED", "failed", ""
        try:
            cfg = config.compose(self.project_dir, overrides)
            key = self._data_key(cfg)
            if key not in self._data:  # the space touches data.*: read that variant once
                self._data[key] = data.load(cfg.data, str(cfg.get("task") or "classification"))
            _current.trial, _current.sign = trial, (1.0 if s.direction == "minimize" else -1.0)
            _current.pruning = s.pruner.get("name", "none") != "none"
            _current.every = int(s.pruner.get("report_every", 1))
            try:
                self._trial_data[trial.number] = key  # the gate re-scores the champion on its test rows
                outcome = recipe.steps(cfg, self.fit, ds=self._data[key], register=False)
            finally:
                _current.trial = None
            value = outcome.metrics.get(s.objective)
            if value is None or not math.isfinite(value):
                raise UserError(f"objective {s.objective} is {value} in this trial")
            trial.set_user_attr("model_uri", outcome.model_uri)
            trial.set_user_attr(COUNTED, "complete")
            status, state = "FINISHED", "complete"
            return float(value)
        except optuna.TrialPruned:
            trial.set_user_attr(COUNTED, "pruned")
            status, state = "FINISHED", "pruned"
            raise
        except UserError as exc:  # a sampled value the library rejects: this trial fails, the sweep goes on
            print(f"error: trial {trial.number}: {exc}", file=sys.stderr, flush=True)
            error = str(exc)
            self._note_failure(trial, error, user=True)
            raise TrialFailed(str(exc)) from None
        except (recipe.Terminated, KeyboardInterrupt):
            status, state = "KILLED", "interrupted"
            _stop.set()
            raise Interrupted() from None
        except Exception as exc:
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}"
            self._note_failure(trial, error, user=False)
            raise TrialFailed(f"{type(exc).__name__}: {one_line(exc)}") from None
        finally:
            mlflow.set_tags({**tags, "mlrecipes.sweep.state": state})  # runName again: the recipe set its own
            if status == "FAILED":
                mlflow.set_tags({"mlrecipes.error": one_line(error)[:1000]})
            mlflow.end_run(status)
            with self._lock:
                self._children.pop(trial.number, None)

    def _note_failure(self, trial, message: str, user: bool) -> None:
        trial.set_user_attr(COUNTED, "failed")
        trial.set_user_attr("error", one_line(message)[:500])
        with self._lock:
            self.failure = message
            self._user_errors += int(user)

    def close_open_children(self) -> None:
        """On SIGTERM: the trials still running in other threads end KILLED (their own thread may not)."""
        from mlflow import MlflowClient

        client = MlflowClient()
        with self._lock:
            open_runs = list(self._children.values())
        for child_id in open_runs:
            try:
                if client.get_run(child_id).info.status == "RUNNING":
                    client.set_tag(child_id, "mlrecipes.sweep.state", "interrupted")
                    client.set_terminated(child_id, "KILLED")
            except Exception:  # noqa: S110  the parent must still be closed
                pass

    # ---------------------------------------------------------------- after the last trial

    def finish(self) -> int:
        import mlflow
        from optuna.trial import TrialState

        from mlrecipes import evaluate, registry

        s = self.settings
        trials = self.study.get_trials(deepcopy=False)
        by_state = {state: sum(t.state == state for t in trials) for state in TrialState}
        mlflow.log_metrics({"trials_complete": by_state[TrialState.COMPLETE],
                            "trials_pruned": by_state[TrialState.PRUNED], "trials_failed": by_state[TrialState.FAIL]})
        self.log_plots(trials)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            self.failure = f"no trial of study {s.study} completed; last error: {one_line(self.failure or '-')}"
            print(f"error: {self.failure}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR if self._user_errors and self._user_errors == by_state[TrialState.FAIL] else 1
        best = self.study.best_trial
        child_id = best.user_attrs["mlflow_run_id"]
        mlflow.log_metrics({"best_value": best.value, f"best_{s.objective}": best.value, "best_trial": best.number})
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.set_tags({"mlrecipes.sweep.best_trial": str(best.number), "mlrecipes.sweep.best_run_id": child_id})
        print(f"[sweep] best trial {best.number}: {s.objective} {best.value:.6g} with "
              f"{', '.join(f'{k}={v}' for k, v in best.params.items())} (run {child_id})", flush=True)
        registered = self.study.user_attrs.get(f"registered.{best.number}")
        if registered:  # a resumed sweep whose best trial an earlier run already registered
            print(f"[sweep] trial {best.number} is already registered as {registered}", flush=True)
            mlflow.set_tag("registry.model", registered)
            return 0
        client = mlflow.MlflowClient()
        metrics = client.get_run(child_id).data.metrics
        ds = self._data.get(self._trial_data.get(best.number))  # None: a trial of an earlier, resumed run
        result = registry.register_and_gate(best.user_attrs["model_uri"], self.base.registry.model_name, child_id,
                                            {k: v for k, v in metrics.items() if k.startswith("test_")},
                                            self.base.gate,
                                            rescore=(lambda uri: evaluate.on_test_rows(uri, ds)) if ds else None)
        model = f"{self.base.registry.model_name}/{result['version']}"
        self.study.set_user_attr(f"registered.{best.number}", model)
        client.set_tag(child_id, "mlrecipes.sweep.registered", "true")
        mlflow.set_tags({"registry.model": model, "gate.decision": client.get_run(child_id).data.tags["gate.decision"],
                         "gate.reason": result["reason"]})
        return 0

    def log_plots(self, trials) -> None:
        """The objective over trials and the parameters' importance, as PNGs; the trials as CSV."""
        import warnings

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mlflow
        import optuna
        from optuna.trial import TrialState

        s = self.settings
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        try:
            frame = self.study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
            mlflow.log_text(frame.to_csv(index=False), "sweep/trials.csv")
        except Exception as exc:  # noqa: BLE001  plots and tables never fail the sweep
            print(f"[sweep] no trials table: {one_line(exc)}", flush=True)
        if not complete:
            return
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [t.number for t in complete]
        ys = [t.value for t in complete]
        ax.scatter(xs, ys, label=s.objective, s=18)
        pick = max if s.direction == "maximize" else min
        best_so_far = [pick(ys[: i + 1]) for i in range(len(ys))]
        ax.step(xs, best_so_far, where="post", color="C1", label="best so far")
        for t in trials:
            if t.state == TrialState.PRUNED:
                ax.axvline(t.number, color="grey", alpha=0.25, linewidth=1)
        ax.set(xlabel="trial", ylabel=s.objective, title=f"{s.study}: {s.objective} over trials ({s.direction})")
        ax.legend()
        fig.tight_layout()
        mlflow.log_figure(fig, "sweep/objective_history.png")
        plt.close(fig)
        if len(complete) < 2 or not any(p.distribution is not None for p in s.space):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importance = optuna.importance.get_param_importances(self.study)
        except Exception as exc:  # noqa: BLE001  e.g. every completed trial had the same params
            print(f"[sweep] no parameter importance: {one_line(exc)}", flush=True)
            return
        if not importance:
            return
        mlflow.log_dict(importance, "sweep/param_importances.json")
        names = list(importance)[::-1]
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
        ax.barh(names, [importance[n] for n in names])
        ax.set(xlabel="importance (fANOVA)", title=f"{s.study}: parameter importance for {s.objective}")
        fig.tight_layout()
        mlflow.log_figure(fig, "sweep/param_importances.png")
        plt.close(fig)


class TrialFailed(Exception):
    """A trial that ended in an error: recorded FAIL, the sweep goes on (its child run says why)."""


class _QuietFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; ours already said why in one `error:` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (TrialFailed, Interrupted)):
            record.exc_info = None
        return True


if __name__ == "__main__":
    # `python -m mlrecipes.sweep` runs this file as __main__; train.py imports `mlrecipes.sweep`.
    # Run the imported module, so the trial the pruning callbacks read is the one the sweep sets.
    from mlrecipes import sweep as _module

    _module.main()
