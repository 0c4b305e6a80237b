"""What a newcomer pays before the first results: fresh clone -> six champions, wall time and disk.

    .venv/bin/python bench/setup_cost.py --label after                 # this checkout's HEAD, all six jobs
    .venv/bin/python bench/setup_cost.py --label before --ref a9944b3  # the commit before the locks (#37)
    .venv/bin/python bench/setup_cost.py --label try --jobs xgboost -P limit=2000   # one project, quick

Clones the repository (a commit, not the working tree) into --workdir, with cold caches of its own
(pip, uv) and its own environment root, as a new user's machine would have, then times:
`make setup` (the .venv), then per job `mlrecipes prepare-env JOB` (its project environment; the second
job of a project finds it built) and `mlrecipes run JOB` (training to a champion). Disk: `du` of the
.venv, each environment and the caches (a file hard-linked into several counts once in the total).
Full MNIST comes from MLRECIPES_DATA_DIR (default: ../shared/data beside the repository).
Results are merged into bench/results/setup_cost.json under --label; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "setup_cost.json"


def sh(argv: list[str], cwd: Path, env: dict[str, str], log) -> float:
    """Run a step, its output to the log; returns its wall time in seconds (raises when it fails)."""
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"error: `{' '.join(argv)}` exited {proc.returncode} after {seconds:.0f} s (see {log.name})")
    return seconds


def du(paths: list[Path]) -> tuple[dict[str, int], int]:
    """Bytes on disk of each path, and of all together (hard links counted once)."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return {}, 0
    out = subprocess.run(["du", "-s", "-c", "-B1", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.strip().splitlines()]
    each = {path: int(size) for size, path in rows[:-1]}
    return each, int(rows[-1][0])


def training_jobs(schedule: Path) -> list[str]:
    """The jobs `mlrecipes run --all` trains: entry point main."""
    doc = yaml.safe_load(schedule.read_text())
    default = (doc.get("defaults") or {}).get("entry_point", "main")
    return [name for name, job in doc["jobs"].items() if (job.get("entry_point") or default) == "main"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", required=True, help="the key of this measurement in the results file")
    ap.add_argument("--ref", default="HEAD", help="the commit to clone (default HEAD)")
    ap.add_argument("--jobs", help="comma-separated jobs (default: every training job, as make run)")
    ap.add_argument("--env-manager", choices=["uv", "virtualenv"], help="override the schedule's env_manager")
    ap.add_argument("-P", dest="params", action="append", default=[], metavar="NAME=VALUE",
                    help="a parameter for every run (e.g. limit=2000 for a quick try)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mlrecipes-setup-cost"))
    ap.add_argument("--keep", action="store_true", help="keep the clone, environments and caches afterwards")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    clone, envs, caches = work / "repo", work / "envs", work / "cache"
    log = open(work / "setup_cost.log", "w")  # noqa: SIM115 - open for the whole measurement
    print(f"[setup_cost] log: {log.name}", flush=True)
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", args.ref], check=True)
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    schedule = clone / "conf" / "schedule.yaml"
    if args.env_manager:
        doc = yaml.safe_load(schedule.read_text())
        doc["defaults"]["env_manager"] = args.env_manager
        schedule.write_text(yaml.safe_dump(doc, sort_keys=False))
    jobs = args.jobs.split(",") if args.jobs else training_jobs(schedule)

    data = os.environ.get("MLRECIPES_DATA_DIR") or str((REPO.parent / "shared" / "data").resolve())
    env = {**os.environ, "PIP_CACHE_DIR": str(caches / "pip"), "UV_CACHE_DIR": str(caches / "uv"),
           "MLFLOW_ENV_ROOT": str(envs), "MLRECIPES_DATA_DIR": data, "PYTHON": "python3.11",
           "MLFLOW_TRACKING_URI": f"sqlite:///{clone}/mlflow.db"}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p)

    steps = []

    def step(name: str, argv: list[str]) -> None:
        print(f"[setup_cost] {name} ...", end=" ", flush=True)
        seconds = sh(argv, clone, env, log)
        steps.append({"step": name, "seconds": round(seconds, 1)})
        print(f"{seconds:.0f} s", flush=True)

    started = time.perf_counter()
    step("make setup", ["make", "setup"])
    cli = str(clone / ".venv" / "bin" / "mlrecipes")
    params = [a for p in args.params for a in ("-P", p)]
    for job in jobs:
        step(f"prepare-env {job}", [cli, "prepare-env", job])
        step(f"run {job}", [cli, "run", job, *params])
    total = time.perf_counter() - started

    env_dirs = sorted(p for p in envs.glob("*") if p.is_dir())
    venv_bytes, _ = du([clone / ".venv"])
    env_bytes, _ = du(env_dirs)
    _, venv_and_envs = du([clone / ".venv", *env_dirs])
    cache_bytes, _ = du([caches / "pip", caches / "uv"])
    result = {
        "when": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit, "cores": os.cpu_count(), "jobs": jobs, "params": args.params,
        "env_manager": args.env_manager or "the schedule's",
        "steps": steps, "total_seconds": round(total, 1),
        "setup_seconds": round(sum(s["seconds"] for s in steps if not s["step"].startswith("run ")), 1),
        "disk_bytes": {".venv": sum(venv_bytes.values()),
                       "environments": {Path(p).name: b for p, b in env_bytes.items()},
                       "venv_and_environments": venv_and_envs,
                       "caches": {Path(p).name: b for p, b in cache_bytes.items()}},
    }
    print(f"[setup_cost] {args.label}: {total / 60:.1f} min, .venv + environments {venv_and_envs / 1e9:.2f} GB",
          flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.label] = result
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
