"""What a boosted model learned: feature importance by gain, and per-feature contributions on a
seeded sample of test rows, logged to the active run under evaluation/.

The projects hand over what their library computes natively (no SHAP dependency): total gain and
split counts per feature, and a function that returns TreeSHAP contributions for some rows
(XGBoost `pred_contribs=True`, LightGBM `pred_contrib=True`). Both give, per row and model output,
one value per feature plus the bias (the expected output), in the model's raw units: log-odds for
binary, per-class raw score (softmax input) for multiclass, the value for regression; a row's
contributions sum to its raw output.

Artifacts (tables only, via `explain`):
- evaluation/feature_importance.json: every feature's total gain, its share and its split count,
  by gain (largest first); evaluation/feature_importance.png: the top `explain.top` by gain.
- evaluation/contributions.json: one row per sampled test row and model output: `(test row)`
  (position in the test split), `(output)` (class for multiclass, the positive class for binary,
  the target for regression), `(bias)` and one column per feature.
- evaluation/contributions.png: mean |contribution| per feature over the sample (top `explain.top`);
  multiclass stacks the classes, so a bar's length is the sum over classes of each class's mean
  |contribution| (as SHAP's summary plot of a multiclass model), and its parts say which class
  the feature moves.
An image set gets the importance table only: 784 pixel bars say nothing and cost seconds to draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TEST_ROW, OUTPUT, BIAS = "(test row)", "(output)", "(bias)"


def importance_table(features: Sequence[str], gain: Sequence[float], splits: Sequence[float]):
    """Every feature's total gain, share of all gain and split count, largest gain first (a feature
    never split on: 0)."""
    import pandas as pd

    gain = np.asarray(gain, dtype=np.float64)
    total = gain.sum()
    table = pd.DataFrame({"feature": list(features), "gain": gain,
                          "gain_share": gain / total if total > 0 else np.zeros_like(gain),
                          "splits": np.asarray(splits, dtype=np.int64)})
    return table.sort_values(["gain", "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """`size` positions of `n` rows (all when there are fewer), drawn with `seed`, in row order."""
    if size <= 0 or n == 0:
        return np.arange(0)
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def as_contributions(raw, rows: int, features: int) -> np.ndarray:
    """The libraries' contribution arrays as (rows, outputs, features + 1), bias last: XGBoost's
    multiclass is (rows, classes, features + 1) already, LightGBM's (rows, classes * (features + 1)),
    and single-output models' (rows, features + 1)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size % (rows * (features + 1)):
        raise ValueError(f"contributions of shape {raw.shape} do not split into {rows} rows x "
                         f"{features} features + bias")
    return raw.reshape(rows, -1, features + 1)


def output_names(task: str, class_names: Sequence[str], outputs: int, target: str | None) -> list[str]:
    """What each model output is: a class (multiclass), the positive class (binary: log-odds of it),
    the target (regression)."""
    if task == "regression":
        return [target or "prediction"]
    if outputs == 1:
        return [str(class_names[-1])]
    return [str(c) for c in class_names]


def contributions_table(contribs: np.ndarray, positions: np.ndarray, features: Sequence[str],
                        outputs: Sequence[str]):
    """(rows, outputs, features + 1) -> one row per sampled row and output (rows outer)."""
    import pandas as pd

    rows, n_out, _ = contribs.shape
    table = pd.DataFrame(contribs.reshape(rows * n_out, -1), columns=[*features, BIAS])
    table.insert(0, OUTPUT, np.tile(np.asarray(outputs, dtype=object), rows))
    table.insert(0, TEST_ROW, np.repeat(np.asarray(positions, dtype=np.int64), n_out))
    return table


def mean_abs(contribs: np.ndarray, features: Sequence[str], outputs: Sequence[str]):
    """Mean |contribution| per feature (rows) and output (columns), bias left out; ordered by the
    sum over outputs, largest first."""
    import pandas as pd

    table = pd.DataFrame(np.abs(contribs[:, :, :-1]).mean(axis=0).T, index=list(features), columns=list(outputs))
    return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def _barh(title: str, xlabel: str, bars, path: str) -> None:
    """Horizontal bars, largest on top; a DataFrame's columns are stacked (one colour each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    bars = bars[::-1]  # barh draws the first bar at the bottom
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.28 * len(bars)))
    left = np.zeros(len(bars))
    for column in bars.columns:
        ax.barh(bars.index.astype(str), bars[column].to_numpy(), left=left, label=str(column))
        left += bars[column].to_numpy()
    if len(bars.columns) > 1:
        ax.legend(title="class", loc="lower right")
    ax.set(title=title, xlabel=xlabel)
    fig.tight_layout()
    mlflow.log_figure(fig, path)
    plt.close(fig)


def log_importance(features: Sequence[str], gain: Sequence[float], splits: Sequence[float], top: int = 30,
                   draw: bool = True):
    """evaluation/feature_importance.json (every feature) and, with `draw`, .png (the top `top` by gain)."""
    import mlflow

    table = importance_table(features, gain, splits)
    mlflow.log_table(table, "evaluation/feature_importance.json")
    if draw:
        shown = table.head(top).set_index("feature")[["gain"]]
        more = f" (top {top} of {len(table)})" if len(table) > top else ""
        _barh(f"Feature importance: total gain{more}", "total gain of the feature's splits", shown,
              "evaluation/feature_importance.png")
    return table


def log_contributions(contribs: np.ndarray, positions: np.ndarray, features: Sequence[str],
                      outputs: Sequence[str], top: int = 30):
    """evaluation/contributions.json (every sampled row) and .png (mean |contribution|, top `top`)."""
    import mlflow

    mlflow.log_table(contributions_table(contribs, positions, features, outputs), "evaluation/contributions.json")
    summary = mean_abs(contribs, features, outputs)
    more = f", top {top} of {len(summary)}" if len(summary) > top else ""
    _barh(f"Mean |contribution| over {len(positions)} test rows{more}",
          "mean |contribution| (raw model output: log-odds / class score / value)", summary.head(top),
          "evaluation/contributions.png")
    return summary


def explain(cfg, ds, features: Sequence[str], gain: Sequence[float], splits: Sequence[float],
            contributions: Callable[[object], np.ndarray]) -> None:
    """Both for a table model; for an image set (no `ds.feature_names`) only the importance table
    (one row per pixel, as the projects logged it before; no charts, no contributions).
    `features`, `gain`, `splits`: per model input column, in its order; `contributions(X)`: the
    library's native contributions for model-input rows X (a slice of `ds.X_test`). The sample:
    `explain.rows` test rows drawn with the run's seed, said in the param `explain.rows_sampled`."""
    import mlflow

    table = ds.feature_names is not None
    settings = cfg.get("explain") or {}
    top = int(settings.get("top", 30))
    log_importance(features, gain, splits, top, draw=table)
    if not table:
        return
    positions = sample_rows(len(ds.y_test), int(settings.get("rows", 1000)), int(cfg.seed))
    mlflow.log_param("explain.rows_sampled", len(positions))
    if not len(positions):
        return
    contribs = as_contributions(contributions(ds.X_test.iloc[positions]), len(positions), len(features))
    outputs = output_names(ds.task, ds.class_names, contribs.shape[1], ds.target)
    log_contributions(contribs, positions, features, outputs, top)
