"""Scoring against the hand-written peer, side by side in one invocation (issue 36, item 1).

    nice -n 5 .venv/bin/python bench/scoring_peer.py [--rows 1000000] [--features 20] [--projects xgboost,lightgbm]
                                                     [--rounds 3]

For each GBDT: train a champion (50 rounds at most) on a 50 k-row table from the same generator
(tests/fixtures/ticks.py), then score the generated N-row x K-feature tick table (+ symbol, venue;
Hive-partitioned by date and symbol) with each scorer in its own process, alternating ours and the
peer for --rounds rounds (this machine's speed drifts 1.5-2x within minutes: each scorer's figures
are its fastest round, and every round's rows/s is kept in the results):
- ours: the launcher, `mlrecipes score <project>` (the real `mlflow run -e predict`), Parquet out,
  partitioned like the input. Figures from the scoring run itself: rows/s and seconds of its
  read-score-write loop, the seconds inside the model's predict (`predict_seconds`), its peak RSS;
  and the whole run's wall seconds.
- the peer (bench/peers/score_table.py): pyarrow read, pandas categoricals, the library's own
  predict (`inplace_predict` / `Booster.predict`), pyarrow partitioned write, the same booster file,
  run by the same interpreter as ours' scoring process (the project's environment). Its clock, like
  ours, starts with the booster loaded.
Writes bench/results/scoring_peer.json and the `scoring-peer` block of docs/benchmarks.md; figures
are written, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
from readme_block import write_block
from run import MLFLOW, REPO, WORK, machine

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import ticks  # noqa: E402  (the fixture generator)

LAUNCHER = str(Path(sys.executable).with_name("mlrecipes"))
PEER = REPO / "bench" / "peers" / "score_table.py"
DATA = "data.target=direction data.name=ticks data.exclude=[date,ts,next_return,up]"


def table(rows: int, features: int, seed: int) -> Path:
    out = WORK / f"ticks_{rows}x{features}" if seed == 7 else WORK / f"ticks_{rows}x{features}_s{seed}"
    if not (out / "ticks_parquet").exists():
        ticks.write_parquet(ticks.make(rows=rows, features=features, seed=seed), out)
    return out / "ticks_parquet"


def watch(argv: list[str], env: dict, marker: str) -> dict:
    """Runs argv; its wall seconds, the peak RSS of its process tree and the interpreter of the
    process whose command line names `marker` (the scoring process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, peak, exe, lines = psutil.Process(proc.pid), 0, None, []
    import threading

    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            if exe is None:
                exe = next((interpreter(p) for p in tree
                            if p.name().startswith("python") and marker in " ".join(p.cmdline())), None)
        except psutil.Error:
            pass
        time.sleep(0.2)
    reader.join()
    if proc.returncode:
        sys.exit(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{''.join(lines)[-3000:]}")
    return {"wall": time.perf_counter() - started, "peak_tree_mb": peak / 2**20, "exe": exe, "out": "".join(lines)}


def interpreter(process: psutil.Process) -> str:
    """The python of a process as started (a virtualenv's python is a symlink: exe() would lose it)."""
    env = process.environ()
    if env.get("VIRTUAL_ENV"):
        return str(Path(env["VIRTUAL_ENV"]) / "bin" / "python")
    first = process.cmdline()[0]
    return first if os.path.isabs(first) else process.exe()


def champion(project: str, small: Path, env: dict) -> None:
    argv = [MLFLOW, "run", str(REPO / "projects" / project), "--env-manager", "virtualenv",
            "--experiment-name", "bench-scoring-peer", "-P", "data=parquet", "-P", "num_boost_round=50",
            "-P", f"overrides=data.path={small} {DATA} gate.threshold=0"]
    watch(argv, env, "train.py")


def main() -> int:
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--projects", default="xgboost,lightgbm")
    parser.add_argument("--rounds", type=int, default=3, help="ours and the peer alternately, this many times each")
    parser.add_argument("--reuse", action="store_true", help="score with the champions of an earlier invocation")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    big, small = table(args.rows, args.features, 7), table(args.train_rows, args.features, 11)
    db = WORK / "scoring_peer.db"
    if not args.reuse:
        db.unlink(missing_ok=True)
    uri = f"sqlite:///{db}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "rows": args.rows,
               "features": args.features, "train_rows": args.train_rows, "rounds": args.rounds,
               "load_average_1m": round(os.getloadavg()[0], 2), "projects": []}
    for project in args.projects.split(","):
        name = f"ticks-{project}"
        try:
            version = client.get_model_version_by_alias(name, "champion")
        except mlflow.exceptions.MlflowException:
            version = None
        if version is None or not args.reuse:
            print(f"training the {project} champion ...", flush=True)
            champion(project, small, env)
            version = client.get_model_version_by_alias(name, "champion")
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}",
                                                             dst_path=str(WORK / f"model_{project}")))
        argv = [LAUNCHER, "score", project, "--tracking-uri", uri, "-P", "data=parquet",
                "-P", f"model={version.version}", "-P", f"output={WORK / f'scored_{project}'}/ours",
                "-P", "keys=[ts,symbol]", "-P", f"overrides=data.path={big} {DATA} registry.model_name={name}"]
        ours_rounds, peer_rounds = [], []
        for i in range(args.rounds):
            print(f"round {i + 1}: ours, then the peer: {project} v{version.version} scores {args.rows} rows ...",
                  flush=True)
            ours_rounds.append(ours_round(client, project, watch(argv, env, "mlrecipes.scoring")))
            exe = ours_rounds[-1]["exe"] or sys.executable
            peer_rounds.append(peer_round(watch([exe, str(PEER), str(model_dir), str(big),
                                                 str(WORK / f"scored_{project}" / "peer")], env, str(PEER))))
        ours = max(ours_rounds, key=lambda r: r["rows_per_second"])
        peer = max(peer_rounds, key=lambda r: r["rows_per_second"])
        row = {"name": project, "model_version": version.version, "rows": ours.pop("rows"),
               "booster_called_directly": ours.pop("booster_called_directly"),
               "ours": {k: v for k, v in ours.items() if k != "exe"}, "peer": peer,
               "ours_over_peer_rows_per_second": round(ours["rows_per_second"] / peer["rows_per_second"], 2),
               "rounds_rows_per_second": [{"ours": o["rows_per_second"], "peer": p["rows_per_second"]}
                                          for o, p in zip(ours_rounds, peer_rounds, strict=True)]}
        results["projects"].append(row)
        print(json.dumps(row), flush=True)
    (REPO / "bench" / "results" / "scoring_peer.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        write_docs(results)
    return 0


def ours_round(client, project: str, ours: dict) -> dict:
    """One run of ours: the figures its scoring run logged."""
    run = client.search_runs([e.experiment_id for e in client.search_experiments()],
                             f"tags.`mlrecipes.entry_point` = 'predict' and tags.`mlrecipes.project` = '{project}'",
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    m = run.data.metrics
    side = max(1, int(m.get("predict_side_by_side", 1)))
    return {"rows": int(m["rows_out"]), "exe": ours["exe"],
            "booster_called_directly": "disagrees with the model's pyfunc" not in ours["out"],
            "rows_per_second": round(m["rows_per_second"]), "seconds": round(m["scoring_seconds"], 2),
            # the booster's calls, summed over the threads calling it side by side
            "predict_seconds": round(m.get("predict_seconds", float("nan")), 2), "predict_side_by_side": side,
            "predict_wall_seconds": round(m.get("predict_seconds", 0.0) / side, 2),
            "beyond_predict_seconds": round(m["scoring_seconds"] - m.get("predict_seconds", 0.0) / side, 2),
            "whole_run_seconds": round(ours["wall"], 1), "peak_rss_mb": round(m["peak_rss_mb"]),
            "peak_rss_mb_tree": round(ours["peak_tree_mb"])}


def peer_round(peer_run: dict) -> dict:
    """One run of the peer: the JSON line it printed."""
    peer = json.loads(peer_run["out"].strip().splitlines()[-1])
    return {"rows_per_second": round(peer["rows"] / peer["seconds"]), **peer,
            "beyond_predict_seconds": round(peer["seconds"] - peer["predict_seconds"], 2),
            "whole_run_seconds": round(peer_run["wall"], 1)}


def write_docs(results: dict) -> None:
    rows = ["| model | scorer | rows/s | seconds (read-score-write) | in the library's predict | beyond it | "
            "whole run s | peak RSS MB | ours ÷ peer rows/s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["projects"]:
        o, p = r["ours"], r["peer"]
        rows.append(f"| {r['name']} | ours: `mlrecipes score` (`mlflow run -e predict`) | "
                    f"{o['rows_per_second']:,} | "
                    f"{o['seconds']:.1f} | {o['predict_wall_seconds']:.1f} | {o['beyond_predict_seconds']:.1f} | "
                    f"{o['whole_run_seconds']:.0f} | {o['peak_rss_mb']} | "
                    f"**{r['ours_over_peer_rows_per_second']:.2f}×** |")
        rows.append(f"| {r['name']} | hand-written (pyarrow, pandas categoricals, native predict, pyarrow write) | "
                    f"{p['rows_per_second']:,} | {p['seconds']:.1f} | {p['predict_seconds']:.1f} | "
                    f"{p['beyond_predict_seconds']:.1f} | {p['whole_run_seconds']:.0f} | {p['peak_rss_mb']} | |")
    m = results["machine"]
    rows.append(f"\n{results['rows']:,} ticks x {results['features']} features + symbol, venue (Hive-partitioned "
                f"Parquet by date and symbol, out the same); champions trained on {results['train_rows']:,} rows, "
                f"50 rounds at most. Each scorer in its own process, the same interpreter, alternating for "
                f"{results['rounds']} rounds; each row is the scorer's fastest round (every round: "
                f"`rounds_rows_per_second` in the results). "
                f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, load average "
                f"{results['load_average_1m']} at the start; measured {results['date']}.")
    write_block("scoring-peer", "\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
