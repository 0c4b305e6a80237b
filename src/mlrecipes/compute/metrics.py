"""Test metrics on the cluster: each partition reduces its rows to a few sums, the driver adds them.

The test rows never come to the driver. Per partition, with `y` the TARGET column and the model's
output beside it (class probabilities `p0..p{k-1}`, or `prediction` for regression):
- classification: the confusion matrix, the summed log loss (probabilities clipped and rows
  normalised as scikit-learn does), and for binary tasks histograms of P(positive) over BINS bins
  for positives and negatives, from which ROC AUC and average precision follow (scores in one bin
  count as tied: exact to within the bin width, 1e-4);
- regression: n, Σe², Σ|e|, Σy, Σy² (RMSE, MAE, R²).
The names are evaluate.scores' (`<prefix>_accuracy`, ...), so the gate and the leaderboard read
a cluster run as any other. Plots come from a seeded sample of at most `compute.sample_rows`
test rows (`sample`), and the run says so (evaluation.sampled_rows).
"""

from __future__ import annotations

import numpy as np

BINS = 10_000
PREDICTION = "prediction"


def proba_columns(k: int) -> list[str]:
    return [f"p{i}" for i in range(k)]


def partial(frame, task: str, k: int, target: str) -> dict[str, np.ndarray]:
    """One partition's sums (runs on a worker)."""
    y = frame[target].to_numpy()
    if task == "regression":
        e = frame[PREDICTION].to_numpy(dtype=np.float64) - y
        return {"n": np.array(len(y)), "se": np.array((e * e).sum()), "ae": np.array(np.abs(e).sum()),
                "y": np.array(y.sum()), "yy": np.array((y * y).sum())}
    y = y.astype(np.int64)
    proba = frame[proba_columns(k)].to_numpy(dtype=np.float64)
    eps = np.finfo(proba.dtype).eps
    clipped = np.clip(proba, eps, 1 - eps)
    clipped /= clipped.sum(axis=1, keepdims=True)
    out = {"n": np.array(len(y)),
           "confusion": np.bincount(y * k + proba.argmax(axis=1), minlength=k * k).reshape(k, k),
           "log_loss": np.array(-np.log(clipped[np.arange(len(y)), y]).sum())}
    if k == 2:
        bins = np.minimum((proba[:, 1] * BINS).astype(np.int64), BINS - 1)
        out["pos"] = np.bincount(bins[y == 1], minlength=BINS)
        out["neg"] = np.bincount(bins[y == 0], minlength=BINS)
    return out


def sums(df, task: str, k: int, target: str) -> dict[str, np.ndarray]:
    """The partial sums of every partition of `df`, added (one small dict comes to the driver)."""
    import dask

    partials = dask.compute(*[dask.delayed(partial)(p, task, k, target) for p in df.to_delayed()])
    total: dict[str, np.ndarray] = {}
    for one in partials:
        for key, value in one.items():
            total[key] = total[key] + value if key in total else value
    return total


def finish(total: dict[str, np.ndarray], task: str, prefix: str) -> dict[str, float]:
    """evaluate.scores' metrics from the sums."""
    n = float(total["n"])
    if task == "regression":
        sst = float(total["yy"]) - float(total["y"]) ** 2 / n
        return {f"{prefix}_rmse": float(np.sqrt(total["se"] / n)), f"{prefix}_mae": float(total["ae"] / n),
                f"{prefix}_r2": float(1 - total["se"] / sst) if sst > 0 else 0.0}
    cm = total["confusion"].astype(np.float64)
    tp, fp, fn = np.diag(cm), cm.sum(axis=0) - np.diag(cm), cm.sum(axis=1) - np.diag(cm)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    out = {f"{prefix}_accuracy": float(np.trace(cm) / n), f"{prefix}_macro_f1": float(f1.mean()),
           f"{prefix}_log_loss": float(total["log_loss"] / n)}
    if "pos" in total:
        out[f"{prefix}_roc_auc"], out[f"{prefix}_pr_auc"] = binned_auc(total["pos"], total["neg"])
    return out


def binned_auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, average precision) from score histograms of positives and negatives."""
    pos, neg = pos[::-1].astype(np.float64), neg[::-1].astype(np.float64)  # highest scores first
    P, N = pos.sum(), neg.sum()
    if P == 0 or N == 0:
        return float("nan"), float("nan")
    above = np.cumsum(pos) - pos  # positives scored above each bin
    roc = float((neg * (above + pos / 2)).sum() / (P * N))
    tps, fps = np.cumsum(pos), np.cumsum(neg)
    at = (pos + neg) > 0
    precision = tps[at] / (tps[at] + fps[at])
    recall_step = pos[at] / P
    return roc, float((precision * recall_step).sum())


def sample(df, rows: int, seed: int, total: int | None = None):
    """At most `rows` rows of `df` as pandas, seeded: what plots and the input example are drawn from."""
    n = int(total if total is not None else df.shape[0].compute())
    if n <= rows:
        return df.compute()
    return df.sample(frac=min(1.0, rows * 1.05 / n), random_state=int(seed)).compute().iloc[:rows]
