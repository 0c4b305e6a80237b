"""Batch scoring throughput and memory: a GBDT champion scores a generated 5-million-row tick table.

    .venv/bin/python bench/scoring.py [--rows 5000000] [--features 20] [--train-rows 50000] [--projects P,Q]

For each project: train a champion (`-P data=parquet`, 50 rounds) on a small table from the same
generator (tests/fixtures/ticks.py), then score the big table through the real
`mlflow run -e predict` (Parquet output, partitioned by date and symbol). The figures come from the
scoring run itself: rows per second over the read-score-write loop, and the scoring process's
peak RSS (`peak_rss_mb`, ru_maxrss). Figures are written to bench/results/scoring.json, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "scoring.json"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


def mlflow_run(project: str, entry: str, params: list[str], env: dict, cwd: Path, experiment: str) -> float:
    argv = [MLFLOW, "run", str(REPO / "projects" / project), "-e", entry, "--env-manager", "virtualenv",
            "--experiment-name", experiment]
    for p in params:
        argv += ["-P", p]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode:
        sys.exit(f"{project} {entry} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    import mlflow
    import ticks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--projects", default="lightgbm,xgboost")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="mlrecipes-bench-scoring-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        big = ticks.write_parquet(ticks.make(rows=args.rows, features=args.features), root / "big")
        generate_s = time.perf_counter() - started
        small = ticks.write_parquet(ticks.make(rows=args.train_rows, features=args.features, seed=11), root / "small")
        uri = f"sqlite:///{root / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        data = "data.target=direction data.name=ticks data.exclude=[date,ts,next_return,up]"
        for project in args.projects.split(","):
            train_s = mlflow_run(project, "main", ["data=parquet", "num_boost_round=50",
                                                   f"overrides=data.path={small} {data} gate.threshold=0.3"],
                                 env, root, "bench-tables")
            out = root / f"predictions-{project}"
            wall_s = mlflow_run(project, "predict", ["data=parquet", f"output={out}", "keys=[ts,symbol]",
                                                     f"overrides=data.path={big} {data}"],
                                env, root, f"ticks-{project}-scoring")
            experiment = client.get_experiment_by_name(f"ticks-{project}-scoring")
            (run,) = client.search_runs([experiment.experiment_id], max_results=1,
                                        order_by=["attributes.start_time DESC"])
            m = run.data.metrics
            results.append({"project": project, "rows": int(m["rows_out"]),
                            "rows_per_second": round(m["rows_per_second"]),
                            "scoring_seconds": round(m["scoring_seconds"], 1),
                            "whole_run_seconds": round(wall_s, 1), "peak_rss_mb": round(m["peak_rss_mb"]),
                            "training_seconds": round(train_s, 1)})
            print(json.dumps(results[-1]), flush=True)
    doc = {"what": f"mlflow run -e predict: GBDT champion (50 rounds, trained on {args.train_rows} rows) scores "
                   f"{args.rows} rows x {args.features} features, Parquet in and out",
           "results": results, "generate_seconds": round(generate_s, 1), "batch_size": 65536,
           "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
           "python": platform.python_version(), "when": datetime.now(UTC).isoformat(timespec="seconds")}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
