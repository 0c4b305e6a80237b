"""The tables-on-a-cluster benchmark: one process vs a LocalCluster of 2 workers, same table, same model.

    python bench/dask_tables.py [--rows 5000000 20000000] [--rounds 50] [--memory 1500MiB]

Run it with a Python that has xgboost and dask: the dev .venv (`make setup-dev`) has both, as
does a project environment with dask[distributed] added. For each size a tick table of N rows × 20 features
(tests/fixtures/ticks.py, Hive-partitioned Parquet in bench/work/) is read, split by time and
trained on with XGBoost (hist, the same params and rounds) in a process of its own:

- `single`: data.load_table (the recipe's ingest) + QuantileDMatrix + xgboost.train;
- `dask`: compute.ingest.load on LocalCluster(2 workers × 1 thread, --memory each) + xgboost.dask
  (compute.boost), metrics from partial sums (compute.metrics).

Per run: wall seconds (read + split + train + test metrics), rows/s, test accuracy, peak RSS of the
driver and of each worker. Writes bench/results/dask_tables.json; figures are written, never
asserted (the machine's 2 cores are shared: the 1-minute load average before and after each run
is recorded beside them). Sizes run apart add up in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "dask_tables"
RESULTS = ROOT / "bench" / "results" / "dask_tables.json"
PARAMS = {"tree_method": "hist", "max_depth": 6, "learning_rate": 0.1, "max_bin": 256}


def table(rows: int) -> Path:
    """The generated tick table of `rows` rows (written once, reused)."""
    out = WORK / f"ticks_{rows}"
    if not (out / "ticks_parquet").exists():
        sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
        import ticks

        ticks.write_parquet(ticks.make(rows=rows, features=20, days=20), out, max_rows_per_file=rows // 40)
    return out / "ticks_parquet"


def data_cfg(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "kind": "parquet", "name": "ticks", "path": str(path), "target": "direction", "columns": None,
        "exclude": ["date", "ts", "next_return", "up", "price"], "filters": None, "split": "time",
        "time_column": "ts", "split_column": None, "val_fraction": 0.1, "test_fraction": 0.2, "limit": 0,
        "seed": 42, "storage_options": {}, "report_by": None})


def peak_mb() -> float:
    """This process's peak RSS: VmHWM, since its exec (ru_maxrss is carried across exec, so a spawned
    worker, or this run's process, would report the peak of the process that started it)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def single(path: Path, rounds: int) -> dict:
    import numpy as np
    import xgboost as xgb

    from mlrecipes.data import load_table

    started = time.perf_counter()
    ds = load_table(data_cfg(path))
    params = {**PARAMS, "objective": "multi:softprob", "num_class": ds.num_classes, "eval_metric": "mlogloss"}
    dtrain = xgb.QuantileDMatrix(ds.X_train, label=ds.y_train, enable_categorical=True, max_bin=256)
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    pred = booster.predict(xgb.DMatrix(ds.X_test, enable_categorical=True)).argmax(axis=1)
    rows = len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    return {"seconds": time.perf_counter() - started, "rows": rows,
            "test_accuracy": float(np.mean(pred == ds.y_test)), "driver_peak_rss_mb": peak_mb()}


def on_dask(path: Path, rounds: int, memory: str) -> dict:
    import xgboost as xgb
    import xgboost.dask  # noqa: F401
    from distributed import Client, LocalCluster

    from mlrecipes.compute import ingest, metrics, predict, steps

    def run(client):
        cd = ingest.load(data_cfg(path), "classification", client)
        params = {**PARAMS, "objective": "multi:softprob", "num_class": cd.num_classes, "eval_metric": "mlogloss"}
        X, y = client.persist([cd.train[cd.features], cd.train[ingest.TARGET]])
        dtrain = xgb.dask.DaskQuantileDMatrix(client, X, y, max_bin=256, enable_categorical=True)
        booster = xgb.dask.train(client, params, dtrain, num_boost_round=rounds)["booster"]
        scored = predict.scored_frames(client, cd.test, "xgboost", booster, cd.features, cd.task, cd.num_classes,
                                       ingest.TARGET)
        rows = sum(int(part.shape[0].compute()) for part in cd.parts().values())  # kept, as `single` counts
        return rows, metrics.finish(metrics.sums(scored, cd.task, cd.num_classes, ingest.TARGET), cd.task, "test")

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=memory, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        started = time.perf_counter()
        # Workers too small for the table pause: one line (the run's guard), never a wait forever.
        rows, results = steps.guard_workers(client, lambda: run(client))
        seconds = time.perf_counter() - started
        workers = client.run(peak_mb)
        return {"seconds": seconds, "rows": rows, "test_accuracy": results["test_accuracy"],
                "driver_peak_rss_mb": peak_mb(), "worker_peak_rss_mb": sorted(workers.values()),
                "worker_memory_limit": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 20_000_000])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--memory", default="1500MiB", help="memory limit per worker")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        mode, path = args.one
        out = single(Path(path), args.rounds) if mode == "single" else on_dask(Path(path), args.rounds, args.memory)
        print(json.dumps(out))
        return
    # Sizes run apart (--rows 5000000, later --rows 20000000) add up in one file; each run is written
    # as soon as it ends, so a long size cut short keeps the others.
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    same = kept.get("rounds") == args.rounds and kept.get("params") == PARAMS
    runs = [r for r in kept.get("runs", []) if same and r.get("table_rows") not in args.rows]
    for rows in args.rows:
        path = table(rows)
        for mode in ("single", "dask"):
            load = os.getloadavg()[0]
            proc = subprocess.run([sys.executable, __file__, "--rounds", str(args.rounds), "--memory", args.memory,
                                   "--one", mode, str(path)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            load = {"load_average_before": load, "load_average_after_1min": os.getloadavg()[0]}
            if proc.returncode:
                runs.append({"table_rows": rows, "mode": mode, "error": proc.stderr.strip().splitlines()[-1:], **load})
            else:
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.append({"table_rows": rows, "mode": mode, **out, "rows_per_s": out["rows"] / out["seconds"],
                             **load})
            print(json.dumps(runs[-1]), flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps({"rounds": args.rounds, "params": PARAMS, "runs": runs}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
