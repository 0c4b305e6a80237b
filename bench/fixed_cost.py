"""The fixed cost of a run: a tiny run (fixture data, 2 rounds or 1 epoch) per job, end to end and
step by step; write, never assert.

    .venv/bin/python bench/fixed_cost.py [--repeats 3] [--jobs xgboost tf_mnist_cnn]

Per job, on a store of its own (bench/work/fixed_cost.db; the first run on it is the "new store"
figure): the wall time of `mlrecipes run <job> <tiny params>` (what `make run` and
Airflow call), median of --repeats warm runs; the same against a local MLflow tracking server
(`mlflow server` over a SQLite file of its own, artifacts served: the compose stack's topology,
where neither process imports the SQL store; --no-server skips it); then `train.py` alone in the project's environment
under cProfile, whose cumulative seconds per recipe step say where the time goes (the imports
before the recipe starts, opening the run, composing the config, ingest, fit, evaluation, plots,
logging the model, registry + gate, closing the run). cProfile slows Python code down by ~1.3x,
so read the steps as shares. Writes bench/results/fixed_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from readme_block import write_block

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
FIXTURES = REPO / "tests" / "fixtures"
TINY = {
    "xgboost": {"limit": 300, "num_boost_round": 2},
    "lightgbm": {"limit": 300, "num_boost_round": 2},
    "tf_mnist_mlp": {"limit": 300, "epochs": 1},
    "tf_mnist_cnn": {"limit": 300, "epochs": 1},
    "torch_mnist_mlp": {"limit": 300, "epochs": 1},
    "torch_mnist_cnn": {"limit": 300, "epochs": 1},
}
# Recipe steps as cProfile names them: (label, file suffix, function name).
STEPS = [
    ("open the run (start_run + system metrics)", "mlflow/tracking/fluent.py", "start_run"),
    ("compose the config (Hydra)", "mlrecipes/config.py", "compose"),
    ("config + tags to MLflow", "mlrecipes/tracking.py", "log_config"),
    ("ingest + split", "mlrecipes/data/__init__.py", "load"),
    ("dataset inputs (digest)", "mlrecipes/tracking.py", "log_dataset"),
    ("fit (the project's code)", "train.py", "fit"),
    ("evaluate: metrics + artifacts", "mlrecipes/evaluate.py", "evaluate"),
    ("training-curves plot", "mlrecipes/evaluate.py", "log_training_curves"),
    ("log the model (flavor save, requirements, serving check)", "mlflow/models/model.py", "log"),
    ("registry + gate", "mlrecipes/registry/gate.py", "register_and_gate"),
    ("close the run", "mlrecipes/lifecycle.py", "close_run"),
]


def launcher_wall(job: str, params: dict, env: dict) -> float:
    argv = [sys.executable, "-m", "mlrecipes", "run", job,
            *[w for k, v in params.items() for w in ("-P", f"{k}={v}")]]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{job}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


@contextmanager
def tracking_server(env: dict):
    """`mlflow server` on a free local port, over a store and artifact root of its own; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store, artifacts = WORK / "fixed_cost_server.db", WORK / "fixed_cost_artifacts"
    store.unlink(missing_ok=True)
    log = (WORK / "fixed_cost_server.log").open("w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{store}",
                               "--artifacts-destination", str(artifacts)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"mlflow server did not start; see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def profile_steps(job: str, params: dict, env: dict) -> dict:
    from mlrecipes import schedule
    from mlrecipes.launch import envs

    spec = schedule.load_schedule().job(job)
    python = envs.env_dir_for(spec) / "bin" / "python"
    overrides = {"limit": "data.limit", "num_boost_round": "model.num_boost_round", "epochs": "train.epochs"}
    argv = [f"{overrides[k]}={v}" for k, v in params.items()] + [f"{k}={v}" for k, v in spec.params.items()]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.prof"
        started = time.perf_counter()
        proc = subprocess.run([str(python), "-m", "cProfile", "-o", str(out), "train.py", *argv], cwd=spec.project_dir,
                              env={**env, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{job} train.py: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        stats = pstats.Stats(str(out)).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max(ct for (_, _, name), (_, _, _, ct, _) in stats.items() if name == "<module>")
    main = sum(ct for (file, _, name), (_, _, _, ct, _) in stats.items()
               if name == "main" and file.endswith("mlrecipes/recipe.py"))
    steps = {"imports before the recipe": round(total - main, 2)}
    for label, suffix, func in STEPS:
        steps[label] = round(sum(ct for (file, _, name), (_, _, _, ct, _) in stats.items()
                                 if name == func and file.endswith(suffix)), 2)
    steps["rest"] = round(total - sum(steps.values()), 2)
    return {"train_py_wall_s": round(wall, 2), "profiled_s": round(total, 2), "steps_s": steps}


def write_readme(results: dict) -> None:
    """The table between the README's fixed-cost markers."""
    jobs = results["jobs"]
    labels = list(next(iter(jobs.values()))["steps_s"])
    rows = ["| step (train.py under cProfile, s) | " + " | ".join(jobs) + " |",
            "| --- |" + " ---: |" * len(jobs)]
    for label in labels:
        rows.append(f"| {label} | " + " | ".join(f"{j['steps_s'][label]:.2f}" for j in jobs.values()) + " |")
    rows.append("| **train.py alone under cProfile, wall** | "
                + " | ".join(f"**{j['train_py_wall_s']:.1f}**" for j in jobs.values()) + " |")
    rows.append("| **through the launcher, wall (median)** | "
                + " | ".join(f"**{j['launcher_s']:.1f}**" for j in jobs.values()) + " |")
    if all("server_launcher_s" in j for j in jobs.values()):
        rows.append("| **the same against a local tracking server (HTTP), wall (median)** | "
                    + " | ".join(f"**{j['server_launcher_s']:.1f}**" for j in jobs.values()) + " |")
    first = next(j for j in jobs.values() if j.get("first_run_is_new_store"))
    job = next(name for name, j in jobs.items() if j is first)
    rows.append(f"\nMeasured {results['date']} (`bench/fixed_cost.py`): tiny runs on the fixture (2 rounds or 1 "
                f"epoch on 300 images). The first run on a new store ({job}, creating the SQLite file) took "
                f"{first['first_run_s']:.1f} s against {first['launcher_s']:.1f} s warm.")
    write_block("fixed-cost", "\n".join(rows))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", nargs="*", default=list(TINY))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-server", action="store_true", help="skip the runs against a local tracking server")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    store = WORK / "fixed_cost.db"
    store.unlink(missing_ok=True)
    uri = f"sqlite:///{store}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLRECIPES_DATA_DIR": str(FIXTURES),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "jobs": {}}
    for n, job in enumerate(args.jobs):
        params = TINY[job]
        first = launcher_wall(job, params, env)  # the very first job also creates the store
        walls = [launcher_wall(job, params, env) for _ in range(args.repeats)]
        row = {"params": params, "launcher_s": round(statistics.median(walls), 2),
               "launcher_all_s": [round(w, 2) for w in walls], "first_run_s": round(first, 2),
               **({"first_run_is_new_store": True} if n == 0 else {})}
        row.update(profile_steps(job, params, env))
        results["jobs"][job] = row
        print(json.dumps({job: row}), flush=True)
    if not args.no_server:
        with tracking_server(env) as url:
            served = {**env, "MLFLOW_TRACKING_URI": url}
            for job in args.jobs:
                launcher_wall(job, TINY[job], served)  # the experiment and the registered model exist after it
                walls = [launcher_wall(job, TINY[job], served) for _ in range(args.repeats)]
                results["jobs"][job]["server_launcher_s"] = round(statistics.median(walls), 2)
                results["jobs"][job]["server_launcher_all_s"] = [round(w, 2) for w in walls]
                print(json.dumps({job: {"server_launcher_all_s": results["jobs"][job]["server_launcher_all_s"]}}),
                      flush=True)
    out = REPO / "bench" / "results" / "fixed_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if set(args.jobs) == set(TINY):
        write_readme(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
