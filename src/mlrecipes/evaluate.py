"""Evaluate: the same metrics and artifacts for every framework, logged to the active run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def evaluate(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Log test_accuracy, test_macro_f1, test_log_loss, a confusion matrix and a report."""
    labels = list(range(len(class_names)))
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 outputs drift off 1 by ~1e-7
    y_pred = proba.argmax(axis=1)
    results = {
        "test_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "test_macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", labels=labels)),
        "test_log_loss": float(skm.log_loss(y_true, proba, labels=labels)),  # sklearn clips itself
    }
    mlflow.log_metrics(results)

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
    return results


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
