"""What a project's train.py needs from a sweep while it trains: the library callbacks that report
each round's validation loss to the trial being trained, and stop it when the pruner says so.

    from mlrecipes.sweep import pruning
    callbacks=[..., *pruning.callbacks("lightgbm")]      # empty outside a sweep

Imported by every train.py, inside a sweep or not: nothing heavy at top level (Optuna and the
framework are imported when a trial needs them). The sweep (`mlrecipes.sweep.study`) says which
trial this thread trains with `reporting_to`, and `stop()`s every trial on SIGTERM.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager


class _Current(threading.local):
    trial = None  # the optuna trial this thread is training, if any
    sign = 1.0  # +1: the study minimises; -1: it maximises (the reported losses are negated)
    every = 1
    pruning = False


_current = _Current()
_stop = threading.Event()  # set on SIGTERM: trials in other threads stop at their next round


class Interrupted(KeyboardInterrupt):
    """A trial stopped because the sweep was terminated (optuna records it FAIL; it is not counted)."""


@contextmanager
def reporting_to(trial, *, minimize: bool, prune: bool, every: int):
    """While this thread trains `trial`: the callbacks report to it (every `every` steps) and, when
    `prune`, raise TrialPruned on the pruner's word."""
    _current.trial, _current.sign = trial, (1.0 if minimize else -1.0)
    _current.pruning, _current.every = prune, every
    try:
        yield
    finally:
        _current.trial = None


def stop() -> None:
    """The sweep was terminated: the trial of every thread raises Interrupted at its next report."""
    _stop.set()


def report(step: int, loss: float) -> None:
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


def callbacks(framework: str) -> list:
    """The library's callback that reports per-round / per-epoch validation loss to the sweep's trial.

    Empty outside a sweep, so a project's train.py adds it unconditionally. Reports the loss the
    library's early stopping watches (lower is better), negated when the study maximises, so the
    pruner compares trials in the study's direction whatever the objective is. A minimal stand-in
    for optuna-integration's callbacks (not installed in the project environments).
    """
    if _current.trial is None:
        return []
    if framework == "lightgbm":
        def lightgbm_pruning(env) -> None:
            loss = next((r[2] for r in env.evaluation_result_list if r[0] == "validation"), None)
            if loss is not None:
                report(env.iteration + 1, loss)

        return [lightgbm_pruning]
    if framework == "xgboost":
        import xgboost as xgb

        class XGBoostPruning(xgb.callback.TrainingCallback):
            def after_iteration(self, model, epoch, evals_log) -> bool:
                metrics = evals_log.get("validation") or {}
                if metrics:
                    report(epoch + 1, float(next(iter(metrics.values()))[-1]))
                return False

        return [XGBoostPruning()]
    if framework == "keras":
        import keras

        class KerasPruning(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs and "val_loss" in logs:
                    report(epoch + 1, float(logs["val_loss"]))

        return [KerasPruning()]
    if framework == "pytorch":  # a plain function the training loop calls once per epoch
        return [report]
    raise ValueError(f"no pruning callback for {framework!r}")
