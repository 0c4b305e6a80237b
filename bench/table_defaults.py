"""Table defaults of both GBDT projects, chosen by validation accuracy on tick tables (never test).

    .venv/bin/python bench/table_defaults.py [--rows 1000000] [--features 20] [--max-rounds 1000] [--max-seconds 180]

Two data sets from the fixture's generator (tests/fixtures/ticks.py): the tick fixture itself
(2,400 rows, 6 features) and a larger table (1 M rows x 20 features), both as Hive-partitioned
Parquet in bench/work/, read by the data package as a `-P data=parquet` run reads them (TABLE: time
split on `ts`, the 3-class `direction`, `symbol` and `venue` as categoricals, gaps kept). Per framework,
in its project environment (one process, `nice -n 10`), a handful of candidates: the library's
own defaults, today's image (MNIST) defaults and a few table settings, each trained with the
project's objective and metrics and early stopping on the validation rows (20 rounds), capped at
--max-rounds rounds and --max-seconds seconds. Recorded: validation accuracy and log loss of the
early-stopped model, rounds, what stopped it, fit seconds. The choice: the best mean validation
accuracy over the two data sets; within 0.002 of it, the fastest (summed fit seconds).
Writes bench/results/table_defaults.json and the benchmarks page's table_defaults block
(`--readme-only`: the block from the JSON, nothing trained); figures are written, never asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work" / "table_defaults"
OUT = REPO / "bench" / "results" / "table_defaults.json"
EARLY_STOPPING = 20
TIE = 0.002  # validation accuracies this close are a tie: the faster candidate wins
CLOCK = time.perf_counter  # what a fit's seconds count; bench/image_defaults.py counts CPU seconds

# name -> booster params (tree_method / objective / metrics / seed come from the project).
CANDIDATES = {
    "xgboost": {
        "library": {"learning_rate": 0.3, "max_depth": 6, "max_bin": 256, "subsample": 1.0,
                    "colsample_bytree": 1.0, "min_child_weight": 1},
        "images": {"learning_rate": 0.4, "max_depth": 7, "max_bin": 32, "subsample": 0.7,
                   "colsample_bytree": 0.3, "min_child_weight": 1},
        "depth6_lr0.1": {"learning_rate": 0.1, "max_depth": 6, "max_bin": 256, "subsample": 0.8,
                         "colsample_bytree": 0.8, "min_child_weight": 1},
        "depth4_lr0.1": {"learning_rate": 0.1, "max_depth": 4, "max_bin": 256, "subsample": 0.8,
                         "colsample_bytree": 0.8, "min_child_weight": 5},
        "depth6_lr0.05": {"learning_rate": 0.05, "max_depth": 6, "max_bin": 256, "subsample": 0.8,
                          "colsample_bytree": 0.8, "min_child_weight": 5},
    },
    "lightgbm": {
        "library": {"learning_rate": 0.1, "num_leaves": 31, "max_bin": 255, "feature_fraction": 1.0,
                    "data_sample_strategy": "bagging", "bagging_fraction": 1.0, "bagging_freq": 0,
                    "min_data_in_leaf": 20, "lambda_l2": 0.0},
        "images": {"learning_rate": 0.3, "num_leaves": 63, "max_bin": 15, "feature_fraction": 0.2,
                   "data_sample_strategy": "goss", "bagging_fraction": 1.0, "bagging_freq": 0,
                   "min_data_in_leaf": 20, "lambda_l2": 0.0, "force_col_wise": True},
        "leaves31_lr0.1": {"learning_rate": 0.1, "num_leaves": 31, "max_bin": 255, "feature_fraction": 0.8,
                           "data_sample_strategy": "bagging", "bagging_fraction": 0.8, "bagging_freq": 1,
                           "min_data_in_leaf": 50, "lambda_l2": 1.0},
        "leaves15_lr0.1": {"learning_rate": 0.1, "num_leaves": 15, "max_bin": 255, "feature_fraction": 0.8,
                           "data_sample_strategy": "bagging", "bagging_fraction": 0.8, "bagging_freq": 1,
                           "min_data_in_leaf": 100, "lambda_l2": 1.0},
        "leaves63_lr0.05": {"learning_rate": 0.05, "num_leaves": 63, "max_bin": 255, "feature_fraction": 0.8,
                            "data_sample_strategy": "bagging", "bagging_fraction": 0.8, "bagging_freq": 1,
                            "min_data_in_leaf": 100, "lambda_l2": 1.0},
    },
}


# ------------------------------------------------------------------ the orchestrator (.venv)

def tables(rows: int, features: int) -> dict[str, dict]:
    """The two data sets, generated once into bench/work/table_defaults/."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    import ticks

    sets = {"fixture": {"rows": 2400, "features": 6}, "large": {"rows": rows, "features": features}}
    for name, shape in sets.items():
        out = WORK / f"{name}_{shape['rows']}x{shape['features']}"
        if not (out / "ticks_parquet").exists():
            started = time.perf_counter()
            ticks.write_parquet(ticks.make(rows=shape["rows"], features=shape["features"]), out)
            print(f"generated {name}: {shape['rows']} rows in {time.perf_counter() - started:.0f} s", flush=True)
        shape["path"] = str(out / "ticks_parquet")
    return sets


def env_python(project: str) -> str:
    """The project environment's interpreter (built by `mlrecipes prepare-env <project>` or a run)."""
    from mlrecipes import schedule
    from mlrecipes.launch import envs

    python = envs.env_dir_for(schedule.load_schedule().job(project)) / "bin" / "python"
    if not python.exists():
        sys.exit(f"error: no environment for {project} at {python.parent.parent}; "
                 f"build it with .venv/bin/mlrecipes prepare-env {project}")
    return str(python)


def choose(candidates: list[dict], sets: list[str]) -> str:
    """Best mean validation accuracy; within TIE of it, the fastest."""
    for c in candidates:
        c["mean_val_accuracy"] = round(sum(c["results"][s]["val_accuracy"] for s in sets) / len(sets), 4)
        c["total_seconds"] = round(sum(c["results"][s]["seconds"] for s in sets), 1)
    best = max(c["mean_val_accuracy"] for c in candidates)
    close = [c for c in candidates if c["mean_val_accuracy"] >= best - TIE]
    return min(close, key=lambda c: c["total_seconds"])["name"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--max-rounds", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=180)
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--readme-only", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one framework's fits here
    parser.add_argument("--sets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    sys.path.insert(0, str(REPO / "bench"))
    from run import machine

    if args.readme_only:
        write_readme(json.loads(OUT.read_text()))
        return 0
    sets = tables(args.rows, args.features)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    where = {name: {**shape, "path": str(Path(shape["path"]).relative_to(REPO))} for name, shape in sets.items()}
    results.update({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "datasets": where,
                    "early_stopping_rounds": EARLY_STOPPING, "max_rounds": args.max_rounds,
                    "max_seconds": args.max_seconds, "rule": f"best mean validation accuracy over the data sets; "
                    f"within {TIE} of it, the fewest summed fit seconds"})
    results.setdefault("frameworks", {})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    for framework in args.only:
        print(f"{framework} ...", flush=True)
        argv = ["nice", "-n", "10", env_python(framework), __file__, "--worker", framework, "--sets", json.dumps(sets),
                "--max-rounds", str(args.max_rounds), "--max-seconds", str(args.max_seconds)]
        proc = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)  # progress: stderr
        if proc.returncode != 0:
            return proc.returncode
        candidates = json.loads(proc.stdout.strip().splitlines()[-1])
        chosen = choose(candidates, list(sets))
        results["frameworks"][framework] = {"chosen": chosen, "candidates": candidates}
        print(f"{framework}: chosen {chosen}", flush=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    write_readme(results)
    return 0


def _cell(r: dict) -> str:
    capped = "" if r["stopped_by"] == "early stopping" else "+"
    return f"{r['val_accuracy']:.4f} · {r['best_round']}{capped} · {r['seconds']:.0f}"


def write_readme(results: dict) -> None:
    from readme_block import write_block

    sets = results["datasets"]
    head = " | ".join(f"{name} ({s['rows']:,} rows): val acc · rounds · s" for name, s in sets.items())
    rows = [f"| model | candidate | {head} | mean val acc |", "| --- | --- |" + " ---: |" * (len(sets) + 1)]
    for framework, found in results["frameworks"].items():
        for c in found["candidates"]:
            name = f"**{c['name']}** (chosen)" if c["name"] == found["chosen"] else c["name"]
            cells = " | ".join(_cell(c["results"][s]) for s in sets)
            rows.append(f"| {framework} | {name} | {cells} | {c['mean_val_accuracy']:.4f} |")
    m = results["machine"]
    rows.append(f"\nRounds: the early-stopped model's; `+`: still improving when the cap "
                f"({results['max_rounds']} rounds or {results['max_seconds']:.0f} s) stopped it. "
                f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), "
                f"{m['memory_gb']} GB, shared; measured {results['date']}.")
    write_block("table_defaults", "\n".join(rows))


# ------------------------------------------------------------------ the worker (project environment)

def project_module(framework: str):
    """The project's train.py, for its OBJECTIVES (the objective and metrics a run trains with)."""
    spec = importlib.util.spec_from_file_location(f"{framework}_train", REPO / "projects" / framework / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The tick table's raw columns as a run reads them with `-P data=parquet` (bench/tables.py's overrides):
# time split on ts, the 3-class direction; f0..f{K-1}, symbol and venue are the features. No window
# features (conf/features): the generator draws each tick's label from that tick's columns alone.
TABLE = ["data=parquet", "data.target=direction", "data.split=time", "data.time_column=ts",
         "data.exclude=[date,ts,next_return,up,price]"]


def load(framework: str, path: str):
    """The data set as a run of the project reads it (the data package, the project's config)."""
    from mlrecipes import config, data

    cfg = config.compose(REPO / "projects" / framework, [*TABLE, f"data.path={path}", "data.name=ticks"])
    return cfg, data.load(cfg.data, str(cfg.task))


def fit_xgboost(module, ds, params: dict, seed: int, max_rounds: int, max_seconds: float):
    import xgboost as xgb

    objective, metrics = module.OBJECTIVES[ds.objective]
    params = {"tree_method": "hist", "eval_metric": metrics, **params, "objective": objective, "seed": seed}
    if ds.objective == "multiclass":
        params["num_class"] = ds.num_classes
    started = CLOCK()
    dtrain = xgb.QuantileDMatrix(ds.X_train, label=ds.y_train, enable_categorical=True, max_bin=params["max_bin"])
    dval = xgb.QuantileDMatrix(ds.X_val, label=ds.y_val, enable_categorical=True, ref=dtrain,
                               max_bin=params["max_bin"])

    class Clock(xgb.callback.TrainingCallback):
        timed_out = False

        def after_iteration(self, model, epoch, evals_log) -> bool:
            Clock.timed_out = CLOCK() - started > max_seconds
            return Clock.timed_out

    booster = xgb.train(params, dtrain, num_boost_round=max_rounds, evals=[(dval, "validation")],
                        early_stopping_rounds=EARLY_STOPPING, verbose_eval=False, callbacks=[Clock()])
    seconds = CLOCK() - started
    stopped = booster.num_boosted_rounds()
    # no best_iteration when the clock stopped the first round (early stopping's callback never ran)
    rounds = int(booster.attr("best_iteration") or stopped - 1) + 1
    proba = booster[:rounds].predict(xgb.DMatrix(ds.X_val, enable_categorical=True))
    why = "time" if Clock.timed_out else "rounds" if stopped >= max_rounds else "early stopping"
    return proba, rounds, stopped, why, seconds


def fit_lightgbm(module, ds, params: dict, seed: int, max_rounds: int, max_seconds: float):
    import lightgbm as lgb

    objective, metrics = module.OBJECTIVES[ds.objective]
    params = {"metric": metrics, **params, "objective": objective, "seed": seed, "verbosity": -1}
    if ds.objective == "multiclass":
        params["num_class"] = ds.num_classes
    started = CLOCK()
    timed_out = []

    def clock(env) -> None:
        if CLOCK() - started > max_seconds:
            timed_out.append(env.iteration)
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    train = lgb.Dataset(ds.X_train, label=ds.y_train)
    val = lgb.Dataset(ds.X_val, label=ds.y_val, reference=train)
    booster = lgb.train(params, train, num_boost_round=max_rounds, valid_sets=[val], valid_names=["validation"],
                        callbacks=[lgb.early_stopping(EARLY_STOPPING, first_metric_only=True, verbose=False), clock])
    seconds = CLOCK() - started
    best = booster.best_iteration or booster.current_iteration()
    proba = booster.predict(ds.X_val, num_iteration=best)
    stopped = booster.current_iteration()
    why = "time" if timed_out else "rounds" if stopped >= max_rounds else "early stopping"
    return proba, best, stopped, why, seconds


def worker(args) -> int:
    from mlrecipes import evaluate

    module = project_module(args.worker)
    fit = fit_xgboost if args.worker == "xgboost" else fit_lightgbm
    sets = json.loads(args.sets)
    candidates = [{"name": name, "params": params, "results": {}} for name, params in CANDIDATES[args.worker].items()]
    for set_name, shape in sets.items():
        cfg, ds = load(args.worker, shape["path"])
        print(f"{args.worker} {set_name}: {len(ds.y_train)} train, {len(ds.y_val)} validation rows, "
              f"features {ds.feature_names}", file=sys.stderr, flush=True)
        for c in candidates:
            proba, best, stopped, why, seconds = fit(module, ds, dict(c["params"]), int(cfg.seed),
                                                     args.max_rounds, args.max_seconds)
            scores = evaluate.scores(ds.task, ds.y_val, proba, ds.num_classes, "val")
            c["results"][set_name] = {"val_accuracy": round(scores["val_accuracy"], 4),
                                      "val_log_loss": round(scores["val_log_loss"], 4), "best_round": int(best),
                                      "rounds": int(stopped), "stopped_by": why, "seconds": round(seconds, 1),
                                      "train_rows": len(ds.y_train), "validation_rows": len(ds.y_val)}
            print(f"  {c['name']}: {json.dumps(c['results'][set_name])}", file=sys.stderr, flush=True)
    print(json.dumps(candidates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
