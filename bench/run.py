"""Benchmark every variant on full MNIST through the real `mlflow run`; write, never assert.

    MLRECIPES_DATA_DIR=../shared/data .venv/bin/python bench/run.py [--only xgboost tf_mnist:cnn]

Writes bench/results.json and the README's results table (between the results markers).
Per variant: test accuracy, training wall time (the run's `train_seconds`), whole-run wall
time, peak RSS of the run's whole process tree (sampled), plus the machine. Also the warm
overhead over calling train.py directly with the same config, through the launcher and
through the `mlflow run` CLI, and the import time of the Airflow DAG file.
Environments should be warm (run `make test` or one run first).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
VARIANTS = [
    ("xgboost", None), ("lightgbm", None),
    ("tf_mnist", "mlp"), ("tf_mnist", "cnn"),
    ("torch_mnist", "mlp"), ("torch_mnist", "cnn"),
]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def measure(argv: list[str], env: dict, cwd: Path) -> tuple[int, float, float, str]:
    """Run argv; return (exit code, wall seconds, peak RSS MB of the process tree, output tail)."""
    log = WORK / "last.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.2)
    wall = time.perf_counter() - started
    return proc.returncode, wall, peak / 2**20, log.read_text()[-4000:]


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def mlflow_run_argv(project: str, params: dict) -> list[str]:
    argv = [MLFLOW, "run", str(REPO / "projects" / project), "--env-manager", "virtualenv",
            "--experiment-name", "mnist-bench"]
    for key, value in params.items():
        argv += ["-P", f"{key}={value}"]
    return argv


def latest_run(client, project: str, variant: str | None):
    exp = client.get_experiment_by_name("mnist-bench")
    flt = f"tags.`mlrecipes.project` = '{project}'"
    if variant:
        flt += f" and tags.`mlrecipes.variant` = '{variant}'"
    return client.search_runs([exp.experiment_id], flt, order_by=["attributes.start_time DESC"], max_results=1)[0]


def env_python(log_text: str) -> str | None:
    """The project environment `mlflow run` activated, read from its own log line."""
    marker = "source "
    for line in log_text.splitlines():
        if "Running command" in line and marker in line:
            return line.split(marker, 1)[1].split("/bin/activate", 1)[0] + "/bin/python"
    return None


def overhead(env: dict, repeats: int) -> dict:
    """Warm overhead over `python train.py` with the same small config (median of repeats), through
    the launcher (`python -m mlrecipes.jobs run`: what `make run` and Airflow use) and through the
    `mlflow run` CLI; plus the CLI's own start-up (`mlflow --version`), which no project can change."""
    params = {"num_boost_round": 5, "limit": 2000}
    direct_args = ["model.num_boost_round=5", "data.limit=2000"]
    launcher = [sys.executable, "-m", "mlrecipes.jobs", "run", "xgboost",
                *[w for k, v in params.items() for w in ("-P", f"{k}={v}")]]
    walls: dict[str, list[float]] = {"direct": [], "launcher": [], "cli": [], "cli_start": []}
    py = None
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits all of them
        code, wall, _, tail = measure(mlflow_run_argv("xgboost", params), env, WORK)
        py = py or env_python(tail)
        if code == 0:
            walls["cli"].append(wall)
        code, wall, _, _ = measure(launcher, env, REPO)
        if code == 0:
            walls["launcher"].append(wall)
        if py:
            direct_env = {**env, "PYTHONPATH": str(REPO / "src")}
            code, wall, _, _ = measure([py, "train.py", *direct_args], direct_env, REPO / "projects" / "xgboost")
            if code == 0:
                walls["direct"].append(wall)
        code, wall, _, _ = measure([MLFLOW, "--version"], env, WORK)
        if code == 0:
            walls["cli_start"].append(wall)
    if not all(walls.values()):
        return {"error": "overhead runs failed: " + ", ".join(k for k, v in walls.items() if not v)}
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "direct_train_py_s": round(med["direct"], 2),
        "launcher_s": round(med["launcher"], 2),
        "mlflow_run_s": round(med["cli"], 2),
        "launcher_overhead_s": round(med["launcher"] - med["direct"], 2),
        "mlflow_run_overhead_s": round(med["cli"] - med["direct"], 2),
        "mlflow_cli_start_s": round(med["cli_start"], 2),
        "repeats": repeats,
    }


def dag_import_seconds() -> float | None:
    script = REPO / "bench" / "dag_import_time.py"
    if not script.exists():
        return None
    subprocess.run([sys.executable, str(script)], check=False)  # writes bench/results/dag_import_time.json
    try:
        return json.loads((REPO / "bench" / "results" / "dag_import_time.json").read_text())["file_wall_s"]
    except (OSError, ValueError, KeyError):
        return None


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version()}


def write_readme(results: dict) -> None:
    rows = ["| model | test accuracy | training s | whole run s | peak RSS MB |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in results["variants"]:
        if "error" in r:
            rows.append(f"| {r['name']} | failed: {r['error']} | | | |")
            continue
        rows.append(f"| {r['name']} | {r['test_accuracy']:.4f} | {r['train_seconds']:.0f} | "
                    f"{r['wall_seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    m, o = results["machine"], results.get("overhead", {})
    notes = [f"\nMachine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}; "
             f"measured {results['date']}."]
    if "launcher_overhead_s" in o:
        notes.append(f"Warm overhead over `python train.py` (median of {o['repeats']}): "
                     f"{o['launcher_overhead_s']:.1f} s through the launcher (`make run`, Airflow), "
                     f"{o['mlflow_run_overhead_s']:.1f} s through the `mlflow run` CLI, whose own start-up "
                     f"(`mlflow --version`) takes {o['mlflow_cli_start_s']:.1f} s.")
    if results.get("dag_import_seconds") is not None:
        notes.append(f"Airflow DAG file import: {results['dag_import_seconds']:.2f} s.")
    block = "\n".join(rows + notes)
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    head, rest = text.split(start, 1)
    readme.write_text(f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="project or project:arch, e.g. xgboost tf_mnist:cnn")
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("MLRECIPES_DATA_DIR"):
        print("error: set MLRECIPES_DATA_DIR to the directory whose mnist/ holds full MNIST", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{WORK / 'mlflow.db'}"
    # Telemetry off as the schedule sets it for the launcher: offline, each MLflow process waits on it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    import mlflow

    client = mlflow.MlflowClient(uri)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "variants": []}
    results_file = REPO / "bench" / "results.json"
    previous = json.loads(results_file.read_text()) if results_file.exists() else {}
    wanted = {s for s in (args.only or [])}
    for project, arch in VARIANTS:
        name = f"{project}:{arch}" if arch else project
        if not (REPO / "projects" / project / "MLproject").exists():
            continue
        if wanted and name not in wanted and project not in wanted:
            kept = [v for v in previous.get("variants", []) if v["name"] == name]
            results["variants"] += kept
            continue
        print(f"bench {name} ...", flush=True)
        code, wall, peak, tail = measure(mlflow_run_argv(project, {"arch": arch} if arch else {}), env, WORK)
        if code != 0:
            results["variants"].append({"name": name, "error": f"exit {code}"})
            print(tail, file=sys.stderr)
            continue
        run = latest_run(client, project, arch)
        row = {
            "name": name,
            "test_accuracy": run.data.metrics["test_accuracy"],
            "train_seconds": run.data.metrics["train_seconds"],
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(peak),
            "run_id": run.info.run_id,
        }
        results["variants"].append(row)
        print(json.dumps(row), flush=True)
    if args.overhead_repeats:
        results["overhead"] = overhead(env, args.overhead_repeats)
    else:
        results["overhead"] = previous.get("overhead", {})
    results["dag_import_seconds"] = dag_import_seconds()
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_readme:
        write_readme(results)
    print(json.dumps({k: v for k, v in results.items() if k != "variants"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
