"""The tables benchmark: both GBDT projects on a generated tick table of 5 M rows x 20 features.

    .venv/bin/python bench/tables.py [--rows 5000000] [--features 20] [--rounds 50]

Generates the table once (tests/fixtures/ticks.py, Hive-partitioned Parquet by date and symbol,
in bench/work/), then trains each GBDT through the real `mlflow run` with a time split on `ts`
and the 3-class `direction` target (string features `symbol` and `venue` as categoricals, gaps
kept). Per project: ingest seconds (read + type + split, the run's `ingest_seconds`), training
seconds, whole-run seconds and the peak RSS of the run's process tree (sampled every 0.2 s) and
of train.py itself (`peak_rss_mb`). Writes bench/results/tables.json and the README's tables
table; figures are written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from readme_block import write_block
from run import MLFLOW, REPO, WORK, machine, measure

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import ticks  # noqa: E402  (the fixture generator)

PROJECTS = ("xgboost", "lightgbm")


def table(rows: int, features: int) -> Path:
    out = WORK / f"ticks_{rows}x{features}"
    if not (out / "ticks_parquet").exists():
        started = time.perf_counter()
        ticks.write_parquet(ticks.make(rows=rows, features=features), out)
        print(f"generated {rows} rows x {features} features in {time.perf_counter() - started:.0f} s", flush=True)
    return out / "ticks_parquet"


def peer(project: str, path: Path, run, env: dict) -> dict:
    """The library's own training on the same rows, split and parameters (bench/peers/train_table.py),
    in its own process, by the project's environment's interpreter."""
    import yaml

    p = run.data.params
    params = {k.removeprefix("model.params."): yaml.safe_load(v) for k, v in p.items() if k.startswith("model.params.")}
    params.update({k: yaml.safe_load(p[k]) for k in ("objective", "num_class") if k in p})
    # Without them XGBoost's default objective (a regression, one tree a round) would be timed against
    # our three-class model: how this bench compared XGBoost until 2026-12-07.
    if "objective" not in params:
        raise SystemExit(f"run {run.info.run_id} logged no objective: the peer would train another model")
    if "seed" in p:
        params["seed"] = int(p["seed"])
    if "metric" in p and project == "lightgbm":
        params["metric"] = p["metric"].split(",")
    spec = {"params": params, "rounds": int(float(p["model.num_boost_round"])),
            "early_stopping_rounds": int(float(p["model.early_stopping_rounds"])), "target": p["data.target"],
            "exclude": yaml.safe_load(p["data.exclude"]), "time_column": p["data.time_column"],
            "rows_train": int(p["data.rows.train"]), "rows_val": int(p["data.rows.validation"])}
    python = project_python(project)
    code, wall, peak, tail = measure([python, str(REPO / "bench" / "peers" / "train_table.py"), project, str(path),
                                      json.dumps(spec)], env, WORK, full=True)
    if code:
        return {"error": f"exit {code}", "tail": tail[-2000:]}
    out = json.loads(tail.strip().splitlines()[-1])
    return {**out, "wall_seconds": round(wall, 1), "python": python}


def project_python(project: str) -> str:
    """The interpreter of the project's newest MLflow environment that imports its library."""
    module = {"xgboost": "xgboost", "lightgbm": "lightgbm", "tf_mnist": "tensorflow", "torch_mnist": "torch"}[project]
    envs = sorted((Path.home() / ".mlflow" / "envs").glob("mlflow-*/bin/python"), key=lambda p: -p.stat().st_mtime)
    for python in envs:
        if subprocess.run([str(python), "-c", f"import {module}, pandas"], capture_output=True).returncode == 0:
            return str(python)
    raise SystemExit(f"no MLflow environment of {project} found: run the project once")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = table(args.rows, args.features)
    uri = f"sqlite:///{WORK / 'tables.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    import mlflow

    client = mlflow.MlflowClient(uri)
    overrides = (f"data.path={path} data.target=direction data.name=ticks5m data.split=time data.time_column=ts "
                 "data.exclude=[date,next_return,up] gate.threshold=0")
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": args.rows,
               "features": args.features, "rounds": args.rounds, "projects": []}
    for project in PROJECTS:
        argv = [MLFLOW, "run", str(REPO / "projects" / project), "--env-manager", "virtualenv",
                "--experiment-name", "tables-bench", "-P", "data=parquet", "-P", f"num_boost_round={args.rounds}",
                "-P", f"overrides={overrides}"]
        print(f"bench {project} ...", flush=True)
        code, wall, peak, tail = measure(argv, env, WORK)
        if code != 0:
            results["projects"].append({"name": project, "error": f"exit {code}"})
            print(tail, file=sys.stderr)
            continue
        exp = client.get_experiment_by_name("tables-bench")
        run = client.search_runs([exp.experiment_id], f"tags.`mlrecipes.project` = '{project}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)[0]
        m = run.data.metrics
        row = {"name": project, "rows_read": int(run.data.params["data.rows.read"]),
               "ingest_seconds": round(m["ingest_seconds"], 1), "train_seconds": round(m["train_seconds"], 1),
               "wall_seconds": round(wall, 1), "peak_rss_mb_tree": round(peak), "peak_rss_mb_train_py":
               round(m["peak_rss_mb"]), "test_accuracy": round(m["test_accuracy"], 4), "run_id": run.info.run_id}
        row["peer"] = peer(project, path, run, env)
        row["whole_run_over_library_training"] = round(wall / row["peer"]["train_seconds"], 2)
        row["peak_rss_over_table"] = round(row["peak_rss_mb_tree"] / row["peer"]["table_mb"], 2)
        results["projects"].append(row)
        print(json.dumps(row), flush=True)
    out = REPO / "bench" / "results" / "tables.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_readme:
        write_readme(results)
    return 0


def write_readme(results: dict) -> None:
    rows = ["| model | rows read | ingest s | training s | whole run s | peak RSS MB (tree / train.py) | "
            "library's own training s (peer) | whole run ÷ library training | table in memory MB | "
            "peak RSS ÷ table | peer peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["projects"]:
        if "error" in r:
            rows.append(f"| {r['name']} | failed: {r['error']} | | | | | | | | | |")
            continue
        peer = r.get("peer") or {}
        theirs = ("| {train_seconds:.0f} | **{ratio:.2f}×** | {table_mb} | {rss:.2f}× | {peak_rss_mb} |".format(
            ratio=r["whole_run_over_library_training"], rss=r["peak_rss_over_table"], **peer)
            if "train_seconds" in peer else "| failed | | | | |")
        rows.append(f"| {r['name']} | {r['rows_read']:,} | {r['ingest_seconds']:.0f} | {r['train_seconds']:.0f} | "
                    f"{r['wall_seconds']:.0f} | {r['peak_rss_mb_tree']} / {r['peak_rss_mb_train_py']} {theirs}")
    m = results["machine"]
    rows.append(f"\n{results['rows']:,} rows x {results['features']} features + symbol, venue; time split; "
                f"{results['rounds']} rounds at most. The peer (`bench/peers/train_table.py`, in the project's "
                f"environment): pyarrow read, pandas categoricals, the run's own split sizes and parameters, the "
                f"library's `xgb.train` on a QuantileDMatrix / `lgb.train` with early stopping; its training "
                f"seconds include building the matrix. Table in memory: the Arrow table of the rows read. "
                f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB; measured {results['date']}.")
    write_block("tables", "\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
