"""What a sweep leaves in its parent run after the last trial, beside the metrics: the objective
over trials and the parameters' importance as PNGs, and the trials as CSV."""

from __future__ import annotations

from mlrecipes.errors import one_line
from mlrecipes.sweep.settings import Settings


def log_plots(study, s: Settings, trials) -> None:
    """Into the active (parent) run; plots and tables never fail the sweep."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import optuna
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    try:
        frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
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
            importance = optuna.importance.get_param_importances(study)
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
