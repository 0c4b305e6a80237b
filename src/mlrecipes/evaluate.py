"""Evaluate: the same metrics and artifacts for every framework, by task, logged to the active run."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def scores(task: str, y_true: np.ndarray, pred: np.ndarray, n_classes: int, prefix: str) -> dict[str, float]:
    """The task's metrics: classification from class probabilities, regression from values."""
    if task == "regression":
        pred = np.asarray(pred, dtype=np.float64).reshape(-1)
        return {
            f"{prefix}_rmse": float(np.sqrt(skm.mean_squared_error(y_true, pred))),
            f"{prefix}_mae": float(skm.mean_absolute_error(y_true, pred)),
            f"{prefix}_r2": float(skm.r2_score(y_true, pred)),
        }
    labels = list(range(n_classes))
    proba = as_proba(pred)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 outputs drift off 1 by ~1e-7
    y_pred = proba.argmax(axis=1)
    out = {
        f"{prefix}_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        f"{prefix}_macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
        f"{prefix}_log_loss": float(skm.log_loss(y_true, proba, labels=labels)),  # sklearn clips itself
    }
    if n_classes == 2 and len(np.unique(y_true)) == 2:
        out[f"{prefix}_roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        out[f"{prefix}_pr_auc"] = float(skm.average_precision_score(y_true, proba[:, 1]))
    return out


def baseline(task: str, y_train: np.ndarray, y_test: np.ndarray, n_classes: int) -> dict[str, float]:
    """The task's metrics (test_baseline_*) of a model that knows only the training target, on the
    test rows: the bar a model must clear. A three-way tick direction at 0.55 means little when
    always "flat" scores 0.52."""
    return scores(task, y_test, _dummy(task, y_train, n_classes)(len(y_test)), n_classes, "test_baseline")


def _dummy(task: str, y_train: np.ndarray, n_classes: int) -> Callable[[int], np.ndarray]:
    """scikit-learn's dummy model fitted on the training target: the class shares (so always the
    most frequent class), or the mean (for returns, about "no change"); its output for n rows."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    fit_on = np.zeros((len(y_train), 1))
    if task == "regression":
        mean = DummyRegressor(strategy="mean").fit(fit_on, y_train)
        return lambda n: mean.predict(np.zeros((n, 1)))
    prior = DummyClassifier(strategy="prior").fit(fit_on, y_train)

    def proba(n: int) -> np.ndarray:
        out = np.zeros((n, n_classes))  # a class the training rows lack: probability 0
        out[:, prior.classes_.astype(np.int64)] = prior.predict_proba(np.zeros((n, 1)))
        return out

    return proba


def by_group(task: str, y_true: np.ndarray, pred: np.ndarray, n_classes: int, y_train: np.ndarray,
             column: str, positions: dict[str, np.ndarray], unseen: np.ndarray | None = None) -> None:
    """The test metrics and baselines per value of one column (data.report_by: a symbol, a venue):
    a model that is good on average can be useless on one symbol. Logged as a table artifact.
    `positions`: each value's test row positions (data.positions_by_value); with `unseen`
    (data.unseen_test_rows), each value's rows with a category the training rows lack."""
    import pandas as pd

    dummy = _dummy(task, y_train, n_classes)  # fitted once: the same bar for every value
    rows = [{column: value, "rows": len(at),
             **({"unseen_rows": int(unseen[at].sum())} if unseen is not None else {}),
             **scores(task, y_true[at], pred[at], n_classes, "test"),
             **scores(task, y_true[at], dummy(len(at)), n_classes, "test_baseline")}
            for value, at in positions.items()]
    mlflow.log_table(pd.DataFrame(rows), f"evaluation/by_{column}.json")


def on_test_rows(model_uri: str, ds) -> dict[str, float]:
    """Another logged model's test_* metrics on `ds`'s test rows: how the gate compares a champion
    that was tested on other rows. The rows go in as scoring hands them over (tables: the raw
    columns its signature names; images: float pixels in [0, 1]); its output is put in this run's
    class order, so the metrics are the same functions of the same rows as the candidate's.
    (mlflow.evaluate would log another set of metrics, named its own way, into this run.)
    The rows come from the Dataset itself (`ds.scoring_input()`): nothing here reads data."""
    model = mlflow.pyfunc.load_model(model_uri)
    rows = ds.scoring_input()
    if ds.feature_names is None:
        out = np.asarray(model.predict(rows), dtype=np.float64)
        return scores(ds.task, ds.y_test, out.reshape(len(ds.y_test), -1), ds.num_classes, "test")
    schema = model.metadata.get_input_schema()
    needed = schema.input_names() if schema is not None else list(ds.feature_names)
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise ValueError(f"it needs column {', '.join(map(repr, missing))}, which this run does not read")
    out = model.predict(rows[needed])
    if ds.task == "regression":
        return scores(ds.task, ds.y_test, out["prediction"].to_numpy(np.float64), 0, "test")
    columns = [f"proba_{c}" for c in ds.class_names]
    if not any(c in out.columns for c in columns):
        raise ValueError(f"it predicts none of this run's classes ({', '.join(ds.class_names)})")
    # A class this run has and the champion never saw: probability 0 (the floor keeps rows summing > 0).
    proba = np.column_stack([out[c].to_numpy(np.float64) if c in out.columns else np.zeros(len(out))
                             for c in columns])
    return scores(ds.task, ds.y_test, np.clip(proba, 1e-12, None), ds.num_classes, "test")


def as_proba(pred) -> np.ndarray:
    """(n, classes) probabilities; a binary model's (n,) P(positive) becomes two columns."""
    proba = np.asarray(pred, dtype=np.float64)
    return proba if proba.ndim == 2 else np.column_stack([1 - proba, proba])


def evaluate(task: str, y_true: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Log the test metrics and the task's evaluation artifacts; return the metrics."""
    results = scores(task, y_true, pred, len(class_names), "test")
    mlflow.log_metrics(results)
    if task == "regression":
        _regression_plots(y_true, np.asarray(pred, dtype=np.float64).reshape(-1), results)
    else:
        _classification_artifacts(y_true, as_proba(pred), class_names, results)
    return results


def _classification_artifacts(y_true, proba, class_names, results) -> None:
    labels = list(range(len(class_names)))
    y_pred = proba.argmax(axis=1)
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    fig, ax = plt.subplots(figsize=(7, 6))
    skm.ConfusionMatrixDisplay(matrix, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d"
    )
    ax.set_title(f"Test confusion matrix (accuracy {results['test_accuracy']:.4f})")
    fig.tight_layout()
    mlflow.log_figure(fig, "evaluation/confusion_matrix.png")
    plt.close(fig)

    report = skm.classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    mlflow.log_dict(report, "evaluation/per_class_report.json")
    mlflow.log_text(
        skm.classification_report(
            y_true, y_pred, labels=labels, target_names=class_names, digits=4, zero_division=0
        ),
        "evaluation/per_class_report.txt",
    )
    if "test_roc_auc" in results:
        fig, ax = plt.subplots(figsize=(6, 5))
        skm.RocCurveDisplay.from_predictions(y_true, proba[:, 1], ax=ax, name=f"positive: {class_names[1]}")
        ax.set_title(f"Test ROC curve (AUC {results['test_roc_auc']:.4f})")
        fig.tight_layout()
        mlflow.log_figure(fig, "evaluation/roc_curve.png")
        plt.close(fig)


def _regression_plots(y_true, y_pred, results) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(y_true, y_pred, s=4, alpha=0.4)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted",
           title=f"Test: predicted vs actual (RMSE {results['test_rmse']:.4g}, R² {results['test_r2']:.3f})")
    fig.tight_layout()
    mlflow.log_figure(fig, "evaluation/predicted_vs_actual.png")
    plt.close(fig)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    residuals = y_true - y_pred
    left.scatter(y_pred, residuals, s=4, alpha=0.4)
    left.axhline(0, color="black", linewidth=1)
    left.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals vs predicted")
    right.hist(residuals, bins=50)
    right.set(xlabel="actual - predicted", title="Residual distribution")
    fig.tight_layout()
    mlflow.log_figure(fig, "evaluation/residuals.png")
    plt.close(fig)


def log_training_curves(run_id: str) -> None:
    """Plot every metric logged at more than one step (per epoch / per iteration)."""
    client = mlflow.MlflowClient()
    # system/* (CPU, memory) are time series too, but not training curves.
    keys = sorted(k for k in client.get_run(run_id).data.metrics if not k.startswith("system/"))
    histories = {k: client.get_metric_history(run_id, k) for k in keys}
    histories = {k: h for k, h in histories.items() if len(h) > 1}
    if not histories:
        return
    # Group train/validation pairs of one quantity (e.g. loss, validation_loss) on one axis.
    groups: dict[str, list[str]] = {}
    for key in histories:
        base = key
        for prefix in ("validation_", "val_", "train_", "training_", "validation-", "train-"):
            base = base.removeprefix(prefix)
        groups.setdefault(base, []).append(key)
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 3 * len(groups)), squeeze=False)
    for ax, (base, members) in zip(axes[:, 0], sorted(groups.items()), strict=True):
        for key in members:
            points = sorted(histories[key], key=lambda m: m.step)
            ax.plot([m.step for m in points], [m.value for m in points], label=key)
        ax.set_title(base)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, "evaluation/training_curves.png")
    plt.close(fig)
