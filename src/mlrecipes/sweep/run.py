"""The sweep's process: `python -m mlrecipes.sweep <project>/train.py --sweep NAME ...` (what each
project's `sweep` entry point runs). Owns the parent run `mlflow run` created, from the first
signal handler to its closing (`mlrecipes.lifecycle`)."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

from mlrecipes.errors import exit_now, readable_output

OPTIONS = ("--sweep", "--trials", "--budget-minutes", "--study")


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    """The sweep's own options (`--trials 30` -> {"trials": "30"}) and the rest (config overrides)."""
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

    from mlrecipes import lifecycle
    from mlrecipes.recipe import SYSTEM_METRICS_INTERVAL_S
    from mlrecipes.sweep import pruning
    from mlrecipes.sweep.study import Sweep

    lifecycle.install()
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    parent = mlflow.start_run(log_system_metrics=True)  # the run `mlflow run` created
    run_id = parent.info.run_id
    sweep = Sweep(train_file, run_id)

    def body() -> lifecycle.Outcome | None:
        sweep.prepare(*parse_args(argv))
        rc = sweep.optimize()
        return lifecycle.Outcome("FAILED", rc, sweep.failure) if rc else None

    outcome = lifecycle.guarded(body, what="sweep run", run_id=run_id)
    # After the handlers, as lifecycle.close_run says: a traceback's frames may hold an interrupted
    # store write. Trials still running in other threads stop at their next report, and their runs
    # end KILLED here (their own thread may not get to it).
    if outcome.status == "KILLED":
        pruning.stop()
        gc.collect()
        sweep.close_open_children()
    rc = lifecycle.close_run(run_id, outcome)
    if outcome.tracking_lost:
        # MLflow's exit handler would try to end the run: another whole retry budget of waiting for
        # a server that is gone. The run stays RUNNING until the reaper ends it (as recipe.main).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc
