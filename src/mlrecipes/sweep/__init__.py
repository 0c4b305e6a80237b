"""Hyperparameter sweeps: an Optuna search as one parent run with a nested recipe run per trial.

    mlflow run projects/lightgbm -e sweep -P sweep=default -P trials=30 [-P data=... -P overrides=...]
    mlflow run projects/lightgbm -e sweep -P sweep=/abs/path/my_space.yaml   # a search space of one's own
    (the entry point runs: python -m mlrecipes.sweep train.py --sweep default --trials 30 ...)

The search space is config: `projects/<name>/conf/sweep/<sweep>.yaml`, a `params` mapping of config
keys to expressions in Hydra's sweeper vocabulary, plus the objective, direction, number of trials,
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

The parts, one concern each:
    space     the search-space grammar: Hydra expressions -> Optuna distributions -> overrides
    settings  the sweep config checked; the study's name and its Optuna storage
    pruning   what a project's train.py uses while it trains (light: imported by every train.py)
    study     the Sweep: parent run, a child run per trial, the best trial registered and gated
    plots     the objective history, parameter importances and trials table of the parent run
    run       the process: signals, the parent run's lifecycle, the command line (`main`)

This file imports none of them, so `from mlrecipes.sweep import pruning` stays light.
"""


def main(argv: list[str] | None = None) -> None:
    """The sweep's command line (mlrecipes.sweep.run.main), importable without loading the sweep."""
    from mlrecipes.sweep.run import main as run_main

    run_main(argv)
