"""How long Airflow takes to import the DAG file (target: <= 0.5 s). Writes and prints the figure.

    .venv/bin/python bench/dag_import_time.py [--repeat 7]

Each sample is a fresh interpreter, as in Airflow's DAG processor: the Airflow SDK is imported
first (the processor has it loaded already), then the DAG file is timed on its own, wall and
CPU. Also reported, each from fresh interpreters too: Airflow's own parse duration for the file
(DagBag stats) and the cold total with `import airflow.sdk` included. Results go to bench/results/dag_import_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "airflow" / "dags" / "mlrecipes_dags.py"
OUT = REPO / "bench" / "results" / "dag_import_time.json"

# argv: DAG file, mode. "file": time the bare import; "dagbag": Airflow's own parse of the file.
SAMPLE = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk  # loaded already in Airflow's DAG processor
if sys.argv[2] == "dagbag":
    from airflow.dag_processing.dagbag import DagBag
t1, c1 = time.perf_counter(), time.process_time()
if sys.argv[2] == "file":
    spec = importlib.util.spec_from_file_location("mlrecipes_dags", sys.argv[1])
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    out = {"dags": None}
else:
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    out = {"dags": len(bag.dags), "dagbag_parse_s": bag.dagbag_stats[0].duration.total_seconds()}
t2, c2 = time.perf_counter(), time.process_time()
heavy = sorted(m for m in ("mlflow", "numpy", "pandas", "tensorflow", "torch", "xgboost", "lightgbm",
                           "hydra", "sklearn") if m in sys.modules)
print(json.dumps({**out, "wall_s": t2 - t1, "cpu_s": c2 - c1, "cold_wall_s": t2 - t0, "heavy": heavy}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    samples = {"file": [], "dagbag": []}
    with tempfile.TemporaryDirectory() as home:
        env["AIRFLOW_HOME"] = home
        for _ in range(args.repeat):
            for mode, found in samples.items():
                proc = subprocess.run([sys.executable, "-c", SAMPLE, str(DAG_FILE), mode], env=env,
                                      capture_output=True, text=True, check=True)
                found.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    def median(mode: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[mode]), 4)

    result = {
        "what": "import of airflow/dags/mlrecipes_dags.py after airflow.sdk (median of fresh processes)",
        "target_s": 0.5,
        "file_wall_s": median("file", "wall_s"),
        "file_cpu_s": median("file", "cpu_s"),
        "dagbag_parse_s": median("dagbag", "dagbag_parse_s"),
        "dagbag_cpu_s": median("dagbag", "cpu_s"),
        "cold_wall_s_with_airflow_sdk": median("file", "cold_wall_s"),
        "samples_file_wall_s": [round(s["wall_s"], 4) for s in samples["file"]],
        "dags": samples["dagbag"][0]["dags"],
        "heavy_modules_loaded": samples["file"][0]["heavy"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"DAG file import: {result['file_wall_s']:.3f} s wall, {result['file_cpu_s']:.3f} s CPU "
          f"(median of {args.repeat}; target <= {result['target_s']} s); Airflow's parse "
          f"{result['dagbag_parse_s']:.3f} s; cold with airflow.sdk {result['cold_wall_s_with_airflow_sdk']:.2f} s; "
          f"{result['dags']} DAGs; heavy modules loaded: {result['heavy_modules_loaded'] or 'none'} -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
