"""The study: one parent run (the one `mlflow run` created) and a nested recipe run per trial.

Trials run in this process (threads when `n_jobs` > 1), so the data is read once, and every trial
is a normal recipe run (`recipe.steps`) inside a nested MLflow run: config, data digest, metrics,
model. A trial that fails (a sampled value the library rejects, an exception) is a FAILED child and
a FAIL trial; the sweep goes on. A trial the pruner stops ends FINISHED with the tag
`mlrecipes.sweep.state=pruned` and no model. Only the best trial's model is registered and gated.
What kills the process (SIGKILL, out of memory) kills the sweep: its study survives in the storage,
and the next start (an Airflow retry, the same command) resumes it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path

from mlrecipes.errors import EXIT_USER_ERROR, UserError, one_line
from mlrecipes.store import absolute_tracking_uri, sqlite_path
from mlrecipes.sweep import pruning
from mlrecipes.sweep.plots import log_plots
from mlrecipes.sweep.settings import BINARY_ONLY, VALIDATION, redact_url, settings
from mlrecipes.sweep.space import override_text, suggest

COUNTED = "mlrecipes.outcome"  # trial user attribute: set when the trial ran to an end of its own
HEARTBEAT_S, GRACE_S = 30, 90  # a trial whose process died is failed (and not counted) after GRACE_S


def load_fit(train_file: Path):
    """The project's `fit`, from its train.py (imported as a module, so its `__main__` block does not run)."""
    import importlib.util

    sys.path.insert(0, str(train_file.parent))  # a project's own modules (torch_mnist's models.py)
    spec = importlib.util.spec_from_file_location("train", train_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module.fit


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

    def prepare(self, opts: dict, rest: list[str]) -> None:
        """`opts`: the sweep's options (sweep, trials, budget_minutes, study); `rest`: config overrides."""
        import mlflow
        from omegaconf import OmegaConf, open_dict

        from mlrecipes import config, data, registry, tracking

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
        # Trials run recipe.steps in this process: a cluster setting would be silently ignored.
        from mlrecipes import compute  # stdlib only at import: no dask

        if compute.on_dask(base):
            raise UserError("compute=dask: a sweep trains its trials in one process; sweeps on a Dask cluster "
                            "are not built yet: sweep with compute=local (the default)")
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

    def _data_key(self, cfg) -> str:
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(cfg.data, resolve=True) + str(cfg.get("task"))

    def _study(self):
        import optuna

        s = self.settings
        optuna.logging.get_logger("optuna")  # sets up optuna's handler
        for handler in logging.getLogger("optuna").handlers:  # a logger's filter misses its children's records
            handler.addFilter(_QuietFailures())
        db = sqlite_path(absolute_tracking_uri(s.storage, Path.cwd()))
        sqlite = db is not None
        if sqlite:
            db.parent.mkdir(parents=True, exist_ok=True)
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
        from mlrecipes.lifecycle import Terminated

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
            self._trial_data[trial.number] = key  # the gate re-scores the champion on its test rows
            with pruning.reporting_to(trial, minimize=s.direction == "minimize",
                                      prune=s.pruner.get("name", "none") != "none",
                                      every=int(s.pruner.get("report_every", 1))):
                outcome = recipe.steps(cfg, self.fit, ds=self._data[key], register=False)
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
        except (Terminated, KeyboardInterrupt):
            status, state = "KILLED", "interrupted"
            pruning.stop()
            raise pruning.Interrupted() from None
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

        from mlrecipes import recipe, registry, tracking

        s = self.settings
        trials = self.study.get_trials(deepcopy=False)
        by_state = {state: sum(t.state == state for t in trials) for state in TrialState}
        mlflow.log_metrics({"trials_complete": by_state[TrialState.COMPLETE],
                            "trials_pruned": by_state[TrialState.PRUNED], "trials_failed": by_state[TrialState.FAIL]})
        log_plots(self.study, s, trials)
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
                                            self.base.gate, context=tracking.airflow_tags(),
                                            rescore=recipe.rescore_on(ds) if ds else None)
        model = f"{self.base.registry.model_name}/{result['version']}"
        self.study.set_user_attr(f"registered.{best.number}", model)
        client.set_tag(child_id, "mlrecipes.sweep.registered", "true")
        mlflow.set_tags({"registry.model": model, "gate.decision": client.get_run(child_id).data.tags["gate.decision"],
                         "gate.reason": result["reason"]})
        return 0


class TrialFailed(Exception):
    """A trial that ended in an error: recorded FAIL, the sweep goes on (its child run says why)."""


class _QuietFailures(logging.Filter):
    """Optuna logs a failed trial with its traceback; ours already said why in one `error:` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (TrialFailed, pruning.Interrupted)):
            record.exc_info = None
        return True

