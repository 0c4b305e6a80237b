"""Benchmark every variant on full MNIST through the real `mlflow run`, side by side with the
published baselines (bench/peers/); write, never assert.

    MLRECIPES_DATA_DIR=/abs/path/to/data .venv/bin/python bench/run.py [--only xgboost keras-mnist-convnet]

Writes bench/results.json, bench/results/curves.png and the README's results tables (between the
results markers). Per variant: test accuracy, training wall time (the run's `train_seconds`), whole-
run wall time, peak RSS of the run's whole process tree (sampled). Ours run with `eval.test_every`
on and each peer snapshots its model per epoch / every 5 rounds the same way (weights copied, or the
round noted, on a clock that leaves the copy out); after training every snapshot is evaluated on the
test set, so each run has a curve of test accuracy against training seconds, measured on a training
that nothing interrupted. From the curves: time to each threshold and the ratio peer ÷ ours (at the
peer's best accuracy when it never reaches the threshold). Also the warm overhead over calling
train.py directly, through the launcher and through the `mlflow run` CLI, and the import time of the
Airflow DAG file. Environments should be warm (run `make test` or one run first).
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
from readme_block import write_block

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work"
VARIANTS = [
    ("xgboost", None), ("lightgbm", None),
    ("tf_mnist", "mlp"), ("tf_mnist", "cnn"),
    ("torch_mnist", "mlp"), ("torch_mnist", "cnn"),
]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
# Test accuracy every N rounds (GBDTs, ours and peers alike) or every epoch (the networks).
TEST_EVERY = {"xgboost": 5, "lightgbm": 5, "tf_mnist": 1, "torch_mnist": 1}
# The published baselines: name, script in bench/peers/, the job whose environment runs it, extra env.
PEERS = [
    ("xgboost-defaults", "xgboost_defaults.py", "xgboost", {}),
    ("lightgbm-defaults", "lightgbm_defaults.py", "lightgbm", {}),
    ("tf-quickstart-mlp", "tf_quickstart.py", "tf_mnist_mlp", {}),
    ("keras-mnist-convnet", "keras_convnet.py", "tf_mnist_cnn", {}),
    # 14 epochs as published, but one epoch of this net (9216x128 dense layer, PIL transform per
    # image) takes ~2.5 min on 2 cores; its curve has passed 99.0 % and flattened by epoch 3.
    ("pytorch-examples-mnist", "torch_examples_mnist.py", "torch_mnist_cnn", {"PEER_EPOCHS": "3"}),
]
# Runs of each peer. The Keras convnet and the TF quickstart set no seed, as published, so the epoch at
# which they cross a threshold moves from run to run (the convnet's 99.0 %: epoch 5 to 9, 48 to 91 s in
# three runs of 2026-12-02): their curve is the median of 3 runs, epoch by epoch. The others are seeded.
PEER_REPEATS = {"keras-mnist-convnet": 3, "tf-quickstart-mlp": 3}
# Run order: each of ours next to its peer, so a slow spell of the machine hits both.
ORDER = ["xgboost", "xgboost-defaults", "lightgbm", "lightgbm-defaults", "tf_mnist:mlp", "torch_mnist:mlp",
         "tf-quickstart-mlp", "tf_mnist:cnn", "torch_mnist:cnn", "keras-mnist-convnet", "pytorch-examples-mnist"]
# (ours, peer, threshold, target): ours should reach the threshold in at most `target` x the peer's time.
TARGETS = [
    ("xgboost", "xgboost-defaults", 0.975, 0.4), ("lightgbm", "lightgbm-defaults", 0.975, 0.4),
    ("tf_mnist:mlp", "tf-quickstart-mlp", 0.98, 0.3), ("torch_mnist:mlp", "tf-quickstart-mlp", 0.98, 0.3),
    ("tf_mnist:cnn", "keras-mnist-convnet", 0.99, 0.25), ("tf_mnist:cnn", "keras-mnist-convnet", 0.992, None),
    ("torch_mnist:cnn", "keras-mnist-convnet", 0.99, 0.25), ("torch_mnist:cnn", "keras-mnist-convnet", 0.992, None),
    ("torch_mnist:cnn", "pytorch-examples-mnist", 0.99, None),
    ("torch_mnist:cnn", "pytorch-examples-mnist", 0.992, None),
]
# Final test accuracy each run should end at (`final_met`, in the JSON only). The CNNs' 99.35 % was met with
# their augmentation (99.34 / 99.36 %); the defaults chosen on two image sets train without it and end at
# 99.22 % (tf) and 99.28 % (torch): the target stays, missed, rather than be lowered to what they reach.
FINAL_TARGET = {"xgboost": 0.977, "lightgbm": 0.977, "tf_mnist:mlp": 0.985, "torch_mnist:mlp": 0.985,
                "tf_mnist:cnn": 0.9935, "torch_mnist:cnn": 0.9935}


def measure(argv: list[str], env: dict, cwd: Path, full: bool = False) -> tuple[int, float, float, str]:
    """Run argv; return (exit code, wall seconds, peak RSS MB of the process tree, output tail or all of it)."""
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
    text = log.read_text()
    return proc.returncode, wall, peak / 2**20, text if full else text[-4000:]


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


def latest_run(client, project: str, variant: str | None, experiment_ids: list[str] | None = None):
    """The newest run of a project (and variant) in the given experiments (default: mnist-bench's)."""
    if experiment_ids is None:
        experiment_ids = [client.get_experiment_by_name("mnist-bench").experiment_id]
    flt = f"tags.`mlrecipes.project` = '{project}'"
    if variant:
        flt += f" and tags.`mlrecipes.variant` = '{variant}'"
    return client.search_runs(experiment_ids, flt, order_by=["attributes.start_time DESC"], max_results=1)[0]


def env_python(log_text: str) -> str | None:
    """The project environment `mlflow run` activated, read from its own log line."""
    marker = "source "
    for line in log_text.splitlines():
        if "Running command" in line and marker in line:
            return line.split(marker, 1)[1].split("/bin/activate", 1)[0] + "/bin/python"
    return None


def overhead(env: dict, repeats: int) -> dict:
    """Warm overhead over `python train.py` with the same small config (median of repeats), through
    the launcher (`mlrecipes run`: what `make run` and Airflow use) and through the
    `mlflow run` CLI; plus the CLI's own start-up (`mlflow --version`), which no project can change."""
    params = {"num_boost_round": 5, "limit": 2000}
    direct_args = ["model.num_boost_round=5", "data.limit=2000"]
    launcher = [sys.executable, "-m", "mlrecipes", "run", "xgboost",
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


def run_curve(client, run_id: str) -> list[dict]:
    """ours: (step, training seconds, test accuracy) from the run's test_curve_* metrics."""
    acc = {m.step: m.value for m in client.get_metric_history(run_id, "test_curve_accuracy")}
    sec = {m.step: m.value for m in client.get_metric_history(run_id, "test_curve_seconds")}
    return [{"step": k, "seconds": round(sec[k], 2), "test_accuracy": acc[k]} for k in sorted(acc) if k in sec]


def log_curve(text: str) -> list[dict]:
    """a peer's `CURVE {json}` lines."""
    return [json.loads(line.split(" ", 1)[1]) for line in text.splitlines() if line.startswith("CURVE ")]


# Accuracies compare with this slack: the Keras peers report float32, in which 9,920 of 10,000 is
# 0.99199998 (below 0.992 by 2e-8); the slack stays below one image of a million-image test set (1e-6).
ACCURACY_SLACK = 1e-7


def crossing(curve: list[dict], threshold: float) -> dict | None:
    """The first evaluation at or above the threshold; None: never reached."""
    return next((p for p in curve if p["test_accuracy"] >= threshold - ACCURACY_SLACK), None)


def time_to(curve: list[dict], threshold: float) -> float | None:
    """Training seconds at the first evaluation at or above the threshold; None: never reached."""
    point = crossing(curve, threshold)
    return None if point is None else point["seconds"]


def median_curve(curves: list[list[dict]]) -> list[dict]:
    """Per step that every run evaluated: the median of the runs' seconds and of their accuracies."""
    steps = sorted(set.intersection(*({p["step"] for p in c} for c in curves)))
    at = [{p["step"]: p for p in c} for c in curves]
    return [{"step": s, "seconds": round(statistics.median(a[s]["seconds"] for a in at), 3),
             "test_accuracy": statistics.median(a[s]["test_accuracy"] for a in at)} for s in steps]


def run_peer(name: str, script: str, job: str, extra: dict, env: dict, repeats: int = 1) -> dict:
    from mlrecipes import schedule
    from mlrecipes.launch import envs

    python = envs.env_dir_for(schedule.load_schedule().job(job)) / "bin" / "python"
    if not python.exists():
        return {"name": name, "error": f"no environment for job {job} (run it once first)"}
    runs = []
    for _ in range(repeats):
        code, wall, peak, text = measure([str(python), script], {**env, **extra}, REPO / "bench" / "peers", full=True)
        curve = log_curve(text)
        if code != 0 or not curve:
            print(text[-4000:], file=sys.stderr)
            return {"name": name, "error": f"exit {code}"}
        runs.append({"wall_seconds": round(wall, 1), "peak_rss_mb": round(peak), "curve": curve})
    curve = median_curve([r["curve"] for r in runs]) if repeats > 1 else runs[0]["curve"]
    row = {"name": name, "peer": True, "script": f"bench/peers/{script}", "test_accuracy": curve[-1]["test_accuracy"],
           "train_seconds": curve[-1]["seconds"],
           "wall_seconds": round(statistics.median(r["wall_seconds"] for r in runs), 1),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "settings": extra, "curve": curve}
    if repeats > 1:
        row["repeats"] = runs
    return row


def comparisons(rows: dict[str, dict]) -> list[dict]:
    out = []
    for ours, peer, threshold, target in TARGETS:
        a, b = rows.get(ours, {}), rows.get(peer, {})
        if "curve" not in a or "curve" not in b:
            continue
        # A peer that never reaches the threshold (the TF quickstart ends at ~97.7 % after its
        # published 5 epochs, seed-dependent): compare at the best the peer reached instead, so
        # the ratio stays defined; `level` says which accuracy the seconds are for.
        peer_best = max(p["test_accuracy"] for p in b["curve"])
        level = threshold if peer_best >= threshold - ACCURACY_SLACK else peer_best
        ta, tb = time_to(a["curve"], level), time_to(b["curve"], level)
        ratio = round(tb / ta, 2) if ta and tb else None
        each = {}
        if "repeats" in b:  # an unseeded peer: its median, and the ratio against its fastest run
            runs = [time_to(r["curve"], level) for r in b["repeats"]]
            fastest = min((t for t in runs if t is not None), default=None)
            each = {"peer_seconds_each_run": runs,
                    "peer_over_ours_fastest_run": round(fastest / ta, 2) if ta and fastest else None}
        # Ours' accuracy at the snapshot that crossed: exactly the level means one test image fewer would
        # move the crossing to the next snapshot (another CPU's kernels may round it that way).
        crossed = (crossing(a["curve"], level) or {}).get("test_accuracy")
        out.append({"ours": ours, "peer": peer, "threshold": threshold, "level": level,
                    "ours_seconds": ta, "peer_seconds": tb, **each, "ours_accuracy_at_crossing": crossed,
                    "peer_over_ours": ratio, "target_ours_over_peer": target,
                    "met": (ta is not None and tb is not None and ta <= target * tb) if target else None,
                    "ours_final": a["test_accuracy"], "peer_final": b["test_accuracy"],
                    "final_met": a["test_accuracy"] >= FINAL_TARGET.get(ours, 0) - ACCURACY_SLACK,
                    "ours_peak_rss_mb": a["peak_rss_mb"], "peer_peak_rss_mb": b["peak_rss_mb"]})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("GBDTs", ("xgboost", "lightgbm"), 0.95, [0.975]), ("MLPs", ("mlp", "quickstart"), 0.96, [0.98]),
              ("CNNs", ("cnn", "convnet", "examples"), 0.98, [0.99, 0.992])]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    for ax, (title, keys, low, lines) in zip(axes, panels, strict=True):
        for r in rows:
            if "curve" in r and any(k in r["name"] for k in keys):
                xs = [p["seconds"] for p in r["curve"]]
                ys = [p["test_accuracy"] for p in r["curve"]]
                peer = r.get("peer", False)
                ax.plot(xs, ys, "--" if peer else "-", marker=".", label=r["name"] + (" (peer)" if peer else ""))
        for y in lines:
            ax.axhline(y, color="grey", lw=0.8, ls=":")
        ax.set(title=title, xlabel="training seconds", ylabel="test accuracy", ylim=(low, 1.0 if low < 0.97 else 0.996))
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def machine() -> dict:
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    # A VM may name only "AMD EPYC": the family and the widest vector unit tell CPUs apart, and
    # the ratios against the peers move with them (README, Results).
    flags = set(info.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    model = info.get("model name") or platform.processor()
    family = f", family {info['cpu family']}" if info.get("cpu family") else ""
    return {"cpus": os.cpu_count(), "cpu_model": f"{model}{family}, {vector}",
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version()}


def write_readme(results: dict) -> None:
    rows = ["| ours | peer (as published) | threshold | ours s | peer s | peer ÷ ours | target | "
            "final ours / peer | peak RSS MB ours / peer |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results.get("comparisons", []):
        def s(v):
            return "not reached" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"
        target = f"≥ {1 / c['target_ours_over_peer']:.1f}×" if c["target_ours_over_peer"] else ""
        ratio = f"{c['peer_over_ours']:.1f}×" if c["peer_over_ours"] else "–"
        level = c.get("level", c["threshold"])
        shown = (f"{c['threshold']:.1%}" if level == c["threshold"]
                 else f"{level:.2%} (the peer's best: it never reached {c['threshold']:.1%})")
        rows.append(f"| {c['ours']} | {c['peer']} | {shown} | {s(c['ours_seconds'])} | "
                    f"{s(c['peer_seconds'])} | {ratio} | {target} | {c['ours_final']:.4f} / {c['peer_final']:.4f} | "
                    f"{c['ours_peak_rss_mb']:.0f} / {c['peer_peak_rss_mb']:.0f} |")
    rows += ["", # the block sits in docs/benchmarks.md; the docs build copies curves.png there (docs/gen_reference.py)
             "![test accuracy against training seconds, ours and the published peers](images/bench_curves.png)",
             "",
             "| run | test accuracy | training s | whole run s | peak RSS MB |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in results["variants"] + results.get("peers", []):
        if "error" in r:
            rows.append(f"| {r['name']} | failed: {r['error']} | | | |")
            continue
        rows.append(f"| {r['name']}{' (peer)' if r.get('peer') else ''} | {r['test_accuracy']:.4f} | "
                    f"{r['train_seconds']:.0f} | "
                    f"{r['wall_seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    m, o = results["machine"], results.get("overhead", {})
    peer_notes = "; ".join(f"{r['name']}: {', '.join(f'{k}={v}' for k, v in r['settings'].items())}"
                           for r in results.get("peers", []) if r.get("settings"))
    notes = [f"\nTimes are training seconds to the first snapshot at or above the threshold (the model taken "
             f"every epoch, or every 5 rounds for the GBDTs, and evaluated on the test set after training); peers run "
             f"as published in the same environments{' (' + peer_notes + ')' if peer_notes else ''}."]
    for r in results.get("peers", []):
        if "repeats" not in r:
            continue
        level = next((c["level"] for c in results.get("comparisons", []) if c["peer"] == r["name"]), None)
        each = [time_to(run["curve"], level) for run in r["repeats"]] if level else []
        shown = ", ".join("never" if t is None else f"{t:.0f} s" for t in each)
        notes.append(f"{r['name']} sets no seed: its curve is the median of {len(r['repeats'])} runs, epoch by epoch"
                     + (f" (to {level:.2%}: {shown})." if each else "."))
    # The targets' margin: the ratio a single run of the peer would have given at its fastest, and how
    # far above the threshold ours' crossing snapshot is (the crossing's epoch is seeded; its seconds drift).
    margins = [f"{c['ours']} {c['peer_over_ours_fastest_run']:.1f}× (ours {c['ours_accuracy_at_crossing']:.2%} "
               f"at {c['ours_seconds']:.0f} s)" for c in results.get("comparisons", [])
               if c["target_ours_over_peer"] and c.get("peer_over_ours_fastest_run")]
    if margins:
        notes.append(f"Against the fastest single run of an unseeded peer, to the same level: {'; '.join(margins)}.")
    notes += [f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}; "
             f"measured {results['date']}."]
    if "launcher_overhead_s" in o:
        notes.append(f"Warm overhead over `python train.py` (median of {o['repeats']}): "
                     f"{o['launcher_overhead_s']:.1f} s through the launcher (`make run`, Airflow), "
                     f"{o['mlflow_run_overhead_s']:.1f} s through the `mlflow run` CLI, whose own start-up "
                     f"(`mlflow --version`) takes {o['mlflow_cli_start_s']:.1f} s.")
    if results.get("dag_import_seconds") is not None:
        notes.append(f"Airflow DAG file import: {results['dag_import_seconds']:.2f} s.")
    block = "\n".join(rows + notes)
    write_block("results", block)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="project or project:arch, e.g. xgboost tf_mnist:cnn")
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--no-peers", action="store_true", help="only ours (peers' rows are dropped)")
    parser.add_argument("--peer-repeats", type=int, help="runs of every peer (default: 3 for the unseeded ones, "
                        "whose curve is then the median of the runs, epoch by epoch; 1 for the others)")
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
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "variants": [], "peers": []}
    results_file = REPO / "bench" / "results.json"
    previous = json.loads(results_file.read_text()) if results_file.exists() else {}
    kept = {r["name"]: r for r in previous.get("variants", []) + previous.get("peers", [])}
    wanted = set(args.only or [])
    ours = {f"{project}:{arch}" if arch else project: (project, arch) for project, arch in VARIANTS}
    peers = {name: rest for name, *rest in PEERS}
    for name in ORDER:
        project = ours.get(name, (name, None))[0]
        if args.no_peers and name in peers:
            continue
        if name in ours and not (REPO / "projects" / project / "MLproject").exists():
            continue
        if wanted and name not in wanted and project not in wanted:
            if name in kept:
                results["peers" if name in peers else "variants"].append(kept[name])
            continue
        print(f"bench {name} ...", flush=True)
        if name in peers:
            repeats = PEER_REPEATS.get(name, 1) if args.peer_repeats is None else args.peer_repeats
            row = run_peer(name, *peers[name], env, repeats)
            results["peers"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("curve", "repeats")}), flush=True)
            continue
        arch = ours[name][1]
        params = {**({"arch": arch} if arch else {}), "overrides": f"eval.test_every={TEST_EVERY[project]}"}
        code, wall, peak, tail = measure(mlflow_run_argv(project, params), env, WORK)
        if code != 0:
            results["variants"].append({"name": name, "error": f"exit {code}"})
            print(tail, file=sys.stderr)
            continue
        run = latest_run(client, project, arch)
        row = {
            "name": name,
            "test_accuracy": run.data.metrics["test_accuracy"],
            "train_seconds": run.data.metrics["train_seconds"],
            "train_cpu_seconds": run.data.metrics.get("train_cpu_seconds"),
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(peak),
            "run_id": run.info.run_id,
            "curve": run_curve(client, run.info.run_id),
        }
        results["variants"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    rows = {r["name"]: r for r in results["variants"] + results["peers"] if "error" not in r}
    results["comparisons"] = comparisons(rows)
    plot(list(rows.values()), REPO / "bench" / "results" / "curves.png")
    if args.overhead_repeats:
        results["overhead"] = overhead(env, args.overhead_repeats)
    else:
        results["overhead"] = previous.get("overhead", {})
    results["dag_import_seconds"] = dag_import_seconds()
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_readme:
        write_readme(results)
    print(json.dumps({k: v for k, v in results.items() if k not in ("variants", "peers")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
