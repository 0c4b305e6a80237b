"""Eight launches at once against one brand-new SQLite store; write what happened, never assert.

    .venv/bin/python bench/concurrency.py [--launches 8] [--label after]

Each launch is the real launcher (`mlrecipes run xgboost`) on the tiny fixture
(300 images, 2 boosting rounds, its own seed, so the runs differ in accuracy), all started within
a few milliseconds against a store file that does not exist yet: first-time schema creation,
experiment creation, run writes, registration and the champion alias all race.
Records per label in bench/results/concurrency.json: launches, failed launches (non-zero exit),
runs FINISHED, registry versions, the champion and whether it is consistent (its accuracy is the
best of the promoted versions), the log lines mentioning "database is locked" and the wall time.
Needs the xgboost environment warm (one `make run` or test run first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "concurrency.json"
LOGS = REPO / "bench" / "work" / "concurrency"  # every launch's log, per label (git-ignored)
MODEL = "mnist-xgboost"


def launch_all(store: Path, logs: Path, n: int) -> tuple[list[int], float]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
           "MLRECIPES_DATA_DIR": str(REPO / "tests" / "fixtures"), "PYTHONPATH": str(REPO / "src")}
    procs = []
    started = time.perf_counter()
    for i in range(n):
        out = open(logs / f"launch-{i}.log", "w")  # noqa: SIM115  (closed below)
        argv = [sys.executable, "-m", "mlrecipes", "run", "xgboost", "-P", "limit=300",
                "-P", "num_boost_round=2", "-P", f"overrides=seed={i} gate.min_accuracy=0"]
        procs.append((subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env), out))
    codes = []
    for proc, out in procs:
        codes.append(proc.wait(timeout=1800))
        out.close()
    return codes, time.perf_counter() - started


def inspect(store: Path) -> dict:
    try:
        return _inspect(store)
    except Exception as exc:  # a store broken by the launches is a result too
        return {"store_error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


def _inspect(store: Path) -> dict:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps) if exps else []
    try:
        versions = sorted(client.search_model_versions(f"name='{MODEL}'"), key=lambda v: int(v.version))
    except MlflowException:
        versions = []
    try:
        champion = client.get_model_version_by_alias(MODEL, "champion")
    except MlflowException:
        champion = None
    accuracy = {v.version: float(v.tags.get("test_accuracy", "nan")) for v in versions}
    promoted = [v.version for v in versions if v.tags.get("gate.decision") == "promoted"]
    best = max((accuracy[v] for v in promoted), default=None)
    return {
        "experiments": len(exps),
        "runs": len(runs),
        "runs_by_status": {s: sum(r.info.status == s for r in runs) for s in {r.info.status for r in runs}},
        "versions": [int(v.version) for v in versions],
        "champion_version": int(champion.version) if champion else None,
        "champion_accuracy": accuracy.get(champion.version) if champion else None,
        "best_promoted_accuracy": best,
        "champion_consistent": bool(champion) and accuracy.get(champion.version) == best,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=8)
    parser.add_argument("--label", default="current", help="key in the results file, e.g. before / after")
    args = parser.parse_args()
    logs = LOGS / args.label
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mlrecipes-concurrency-") as tmp:
        store = Path(tmp) / "new" / "mlflow.db"
        codes, wall = launch_all(store, logs, args.launches)
        texts = [p.read_text(errors="replace") for p in sorted(logs.glob("launch-*.log"))]
        locked = [line.strip()[:300] for text in texts for line in text.splitlines()
                  if "database is locked" in line]
        result = {
            "launches": args.launches,
            "failed_launches": sum(c != 0 for c in codes),
            "exit_codes": codes,
            "wall_seconds": round(wall, 1),
            "database_is_locked_lines": len(locked),
            "database_is_locked_examples": sorted(set(locked))[:5],
            "tracebacks": sum(text.count("Traceback") for text in texts),
            **inspect(store),
            "errors": sorted({line[:300] for text in texts for line in text.splitlines()
                              if line.startswith("error:") or "Error:" in line})[:10],
            "cpus": os.cpu_count(),
            "measured": time.strftime("%Y-%m-%d %H:%M"),
        }
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc[args.label] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
