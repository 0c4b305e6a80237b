"""The networks' defaults against the library's own, at equal CPU time, on two image sets (#36 item 4).

    .venv/bin/python bench/fashion_mnist.py          # once: Fashion-MNIST into bench/work/data/
    nice -n 5 .venv/bin/python bench/network_defaults.py [--sets fashion_mnist mnist] [--only tf_mnist/cnn ...]
    nice -n 5 .venv/bin/python bench/network_defaults.py --only tf_mnist/cnn torch_mnist/cnn --epochs 5 7 9

For each set, project (tf_mnist, torch_mnist) and arch (mlp, cnn): `ours` is the project's train.py
with its defaults (the run's own code, in the project's MLflow environment): its validation accuracy
(`val_accuracy`, the final model on the run's validation images) and its CPU seconds of training
(`train_cpu_seconds`). `library` (bench/peers/network_library_defaults.py) trains the same network on
the same images with the library's defaults (Adam at 1e-3, constant; batch 32; plain cross-entropy;
no augmentation) for the same CPU seconds. The test images are never scored. Writes
bench/results/network_defaults.json and the benchmarks page's network_defaults block; figures are
written, never asserted. `--epochs`: ours only, once per number of epochs (`train.epochs=N`, the
one-cycle schedule stretched over them), for the choice of that default (the network_epochs block).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from image_defaults import SETS  # where the two image sets live: one definition for both benches
from readme_block import write_block
from run import REPO, WORK, latest_run, machine
from tables import project_python

OUT = REPO / "bench" / "results" / "network_defaults.json"
VARIANTS = [("tf_mnist", "mlp"), ("tf_mnist", "cnn"), ("torch_mnist", "mlp"), ("torch_mnist", "cnn")]


def ours(python: str, project: str, arch: str, set_name: str, env: dict, extra: tuple[str, ...] = ()) -> dict:
    import mlflow

    argv = [python, str(REPO / "projects" / project / "train.py"), f"data={set_name}", f"data.dir={SETS[set_name]}",
            f"arch={arch}", "gate.threshold=0",
            f"registry.model_name=bench-{set_name}-{project}-{arch}", *extra]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=WORK, env=env, capture_output=True, text=True)  # its mlruns/ there
    if done.returncode:
        return {"error": f"exit {done.returncode}", "tail": done.stderr[-2000:]}
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = latest_run(client, project, arch, [e.experiment_id for e in client.search_experiments()])
    m, params = run.data.metrics, run.data.params
    return {"val_accuracy": round(m["val_accuracy"], 4), "epochs": params.get("epochs") or params.get("train.epochs"),
            "cpu_seconds": round(m["train_cpu_seconds"], 1), "train_seconds": round(m["train_seconds"], 1),
            "wall_seconds": round(time.perf_counter() - started, 1), "run_id": run.info.run_id}


def library(python: str, project: str, arch: str, set_name: str, cpu_seconds: float, env: dict) -> dict:
    argv = [python, str(REPO / "bench" / "peers" / "network_library_defaults.py"), project, set_name, SETS[set_name],
            arch, str(cpu_seconds)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        return {"error": f"exit {done.returncode}", "tail": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["fashion_mnist", "mnist"], choices=sorted(SETS))
    parser.add_argument("--only", nargs="+", help="PROJECT/ARCH, e.g. torch_mnist/cnn")
    parser.add_argument("--epochs", nargs="+", type=int, help="ours only, once per number of epochs")
    parser.add_argument("--docs-only", action="store_true", help="rewrite the docs blocks from the JSON")
    args = parser.parse_args()
    if args.docs_only:
        write_docs(json.loads(OUT.read_text()))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{WORK / 'network_defaults.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    now = time.strftime("%Y-%m-%d %H:%M")
    if not args.epochs:  # the epochs rows carry their own date: the comparison's stays its own
        results.update({"date": now, "machine": machine(),
                        "clock": "CPU seconds of the process (all its threads) while training"})
    for set_name in args.sets:
        for project, arch in VARIANTS:
            if args.only and f"{project}/{arch}" not in args.only:
                continue
            python = project_python(project)
            if args.epochs:
                for n in args.epochs:
                    print(f"{set_name} {project}/{arch}: {n} epochs ...", flush=True)
                    row = {"set": set_name, "project": project, "arch": arch, "epochs": n, "date": now,
                           "ours": ours(python, project, arch, set_name, env, (f"train.epochs={n}",))}
                    print(f"  {row['ours']}", flush=True)
                    key = (set_name, project, arch, n)
                    results["epochs"] = [r for r in results.get("epochs", [])
                                         if (r["set"], r["project"], r["arch"], r["epochs"]) != key] + [row]
                    OUT.write_text(json.dumps(results, indent=2) + "\n")
                continue
            print(f"{set_name} {project}/{arch}: ours ...", flush=True)
            row = {"set": set_name, "project": project, "arch": arch,
                   "ours": ours(python, project, arch, set_name, env)}
            if "error" not in row["ours"]:
                print(f"  ours {row['ours']}; library for {row['ours']['cpu_seconds']} CPU s ...", flush=True)
                row["library"] = library(python, project, arch, set_name, row["ours"]["cpu_seconds"], env)
                print(f"  library {row['library']}", flush=True)
            key = (set_name, project, arch)
            results["rows"] = [r for r in results["rows"] if (r["set"], r["project"], r["arch"]) != key]
            results["rows"].append(row)
            OUT.write_text(json.dumps(results, indent=2) + "\n")
    write_docs(results)
    return 0


def write_docs(results: dict) -> None:
    m = results["machine"]
    rows = ["| set | network | ours: validation accuracy | library's defaults, same CPU time | ours − library | "
            "CPU s | epochs ours / library |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    order = {name: i for i, name in enumerate(SETS)}
    for r in sorted(results["rows"], key=lambda r: (-order[r["set"]], r["project"], r["arch"])):
        o, lib, name = r["ours"], r.get("library", {}), f"| {r['set']} | {r['project']} {r['arch']} |"
        if "error" in o or "error" in lib:
            rows.append(f"{name} {o.get('error', '')} | {lib.get('error', '')} | | | |")
            continue
        rows.append(f"{name} {o['val_accuracy']:.4f} | {lib['val_accuracy']:.4f} | "
                    f"{o['val_accuracy'] - lib['val_accuracy']:+.4f} | {o['cpu_seconds']:.0f} | "
                    f"{o['epochs'] or '?'} / {lib['epochs']} |")
    rows += ["", f"Validation images: the run's own split (10 % of the training images, stratified). Library's "
             f"defaults: the same network, Adam at 1e-3 (constant), batch 32, plain cross-entropy, no augmentation, "
             f"stopped at ours' CPU seconds of training. Machine: {m['cpus']} CPUs ({m['cpu_model']}), "
             f"{m['memory_gb']} GB; measured {results['date']} "
             f"(`bench/results/network_defaults.json`)."]
    write_block("network_defaults", "\n".join(rows))
    if results.get("epochs"):
        write_block("network_epochs", epochs_block(results))


def epochs_block(results: dict) -> str:
    """Validation accuracy by number of epochs, per network and set, and the mean over the sets."""
    runs = {(r["project"], r["arch"], r["epochs"], r["set"]): r["ours"] for r in results["epochs"]}
    sets = [s for s in SETS if any(k[3] == s for k in runs)]
    head = " | ".join(f"{s}: validation accuracy | CPU s" for s in sets)
    rows = [f"| network | epochs | {head} | mean accuracy |",
            "| --- | ---: |" + " ---: | ---: |" * len(sets) + " ---: |"]
    for project, arch, n in sorted({k[:3] for k in runs}):
        got = [runs.get((project, arch, n, s), {}) for s in sets]
        cells = " | ".join(f"{o['val_accuracy']:.4f} | {o['cpu_seconds']:.0f}" if "val_accuracy" in o
                           else f"{o.get('error', 'not run')} | " for o in got)
        ok = [o["val_accuracy"] for o in got if "val_accuracy" in o]
        mean = f"{sum(ok) / len(ok):.4f}" if len(ok) == len(sets) else ""
        rows.append(f"| {project} {arch} | {n} | {cells} | {mean} |")
    dates = sorted({r["date"] for r in results["epochs"]})
    rows += ["", f"The run's own validation images; CPU seconds of training. Measured {', '.join(dates)} "
             f"(`bench/results/network_defaults.json`, `epochs`)."]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
