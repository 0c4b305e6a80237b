"""The compose `celery` profile without Docker: Airflow 3's CeleryExecutor with two workers.

Started and torn down here, everything on 127.0.0.1 on free ports: PostgreSQL (Airflow's metadata
and Celery's results, MLflow's runs: tests/stack/native.py), Redis (Debian's redis-server,
tests/stack/install_redis.sh) as the broker, the authenticated MLflow server, and Airflow 3 with
the environment the compose file gives its `x-airflow-common` services (read from
docker-compose.yml, only addresses, secrets and paths swapped; the differences are listed in
`airflow_env` and docs/stack.md): api-server, scheduler, dag-processor and two Celery workers of
concurrency 1, each reporting its own hostname, reading the repository's one DAG file with the
schedule's `compose` profile (its tracking URI pointed at the native server, its pools as shipped).

1. Every training DAG triggered at once (tiny params, fixture data): all six runs succeed, both
   workers ran tasks, the `mlrecipes_dl` pool never ran more DL tasks at once than its slots, and
   every MLflow run is FINISHED on the tracking server, tagged with its DAG run and registered.
2. A worker SIGKILLed with its whole process tree under a training: Airflow's heartbeat timeout
   gives the try up, the retry runs on the other worker and finishes, and the lost try's MLflow
   run is closed FAILED by the retry's launch (mlrecipes.launch.reap.reap_superseded).

    .venv/bin/python -m pytest -m celery tests/stack/test_native_celery.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import requests
import yaml
from native import FIXTURE_DATA, REPO, VENV_BIN, compose, free_port, secret, stop_group, tags_of

pytestmark = pytest.mark.celery

AIRFLOW = str(VENV_BIN / "airflow")
WORKERS = ("worker-1", "worker-2")
GBT = {"limit": 300, "num_boost_round": 10, "overrides": "gate.threshold=0.0"}
DL = {"limit": 300, "epochs": 2, "batch_size": 64, "overrides": "gate.threshold=0.0"}  # torch: >= 4 steps
CONF = {"xgboost": GBT, "lightgbm": GBT, "tf_mnist_mlp": DL, "tf_mnist_cnn": DL,
        "torch_mnist_mlp": DL, "torch_mnist_cnn": DL}
HEARTBEAT_TIMEOUT_S = 30
RUN_TIMEOUT_S = 3600


def native_schedule(tmp_path: Path, server_url: str) -> Path:
    """conf/schedule.yaml's training jobs, its `compose` profile pointed at the native server and environments;
    no cron schedules (unpausing a DAG would start its latest interval with the full defaults:
    the test triggers its own runs), one quick retry (the worker-loss test); the rest as shipped."""
    doc = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())
    profile = doc["profiles"]["compose"]
    profile.update(tracking_uri=server_url, ui_url=server_url,
                   env_manager="virtualenv", env_root=None)  # the machine's built envs, not uv's volume
    profile["env"] = {k: v for k, v in profile.get("env", {}).items() if not k.startswith("UV_")}
    doc["defaults"].update(retries=1, retry_delay_minutes=0.05, retry_backoff=1.0)
    # The six trainings: the scoring and sweep jobs need a champion and are tested on their own.
    doc["jobs"] = {name: job for name, job in doc["jobs"].items() if name in CONF}
    for job in doc["jobs"].values():
        job["schedule"] = None
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def airflow_env(home: Path, postgres, redis_port: int, api_port: int, server, schedule: Path) -> dict[str, str]:
    """The compose file's `x-airflow-common` environment with only what must differ natively swapped."""
    common = {k: str(v) for k, v in compose()["x-airflow-common"]["environment"].items()}
    db = f"airflow:{postgres.passwords['AIRFLOW_DB_PASSWORD']}@127.0.0.1:{postgres.port}/airflow"
    swapped = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",  # what the celery profile's .env sets
        # The FAB provider is in the image, not in .venv: Airflow's simple auth manager instead.
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",  # AIRFLOW_WORKER_CONCURRENCY=1 in .env
        "AIRFLOW__CORE__FERNET_KEY": "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk=",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret(),
        "AIRFLOW__API__SECRET_KEY": secret(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow" / "dags"),
        "AIRFLOW__CORE__PARALLELISM": "4",
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": server.user[0],
        "MLFLOW_TRACKING_PASSWORD": server.user[1],
        "MLFLOW_ENV_ROOT": str(Path.home() / ".mlflow" / "envs"),  # one env root for both workers
        "MLRECIPES_DATA_DIR": str(FIXTURE_DATA),
        "GIT_CONFIG_VALUE_0": str(REPO),
    }
    assert set(swapped) <= set(common), set(swapped) - set(common)  # a renamed compose setting shows here
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLRECIPES_"))}
    env.update({k: v for k, v in common.items() if not k.startswith("UV_")})
    env.update(swapped)
    env.update({  # natively only: one machine, so ports and hostnames are told apart here
        "AIRFLOW_HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "tests" / "stack"),  # celery_hostname
        "MLRECIPES_SCHEDULE": str(schedule),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_hostname.hostname",
        "MLRECIPES_TEST_HOSTNAME": "airflow-scheduler",
    })
    return env


class Cluster:
    def __init__(self, postgres, server, work: Path):
        self.postgres, self.server, self.work = postgres, server, work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        self.lost: set[str] = set()  # workers the test killed
        self.api_port, self.redis_port = free_port(), free_port()
        self.env = airflow_env(work / "home", postgres, self.redis_port, self.api_port, server,
                               native_schedule(work, server.url))

    def start(self, name: str, argv: list[str], **env: str) -> None:
        with (self.logs / f"{name}.log").open("w") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.work,
                                                env={**self.env, **env}, start_new_session=True)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def airflow(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=self.env, cwd=self.work,
                              timeout=timeout)
        assert proc.returncode == 0, f"airflow {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def sql(self, query: str) -> list[list[str]]:
        out = self.postgres.psql(query, "airflow", self.postgres.passwords["AIRFLOW_DB_PASSWORD"])
        return [line.split("|") for line in out.splitlines() if line]

    def wait(self, what: str, check, timeout: float, interval: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None or name in self.lost, f"{name} exited:\n{self.log(name)[-4000:]}"
            result = check()
            if result:
                return result
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}")

    def up(self) -> None:
        self.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                             "--save", "", "--appendonly", "no", "--dir", str(self.work)])
        self.airflow("db", "migrate", timeout=900)
        # What the compose stack's airflow-init runs after migrating: the schedule's pools.
        proc = subprocess.run(["bash", str(REPO / "compose" / "airflow" / "create-pools.sh")], env=self.env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        self.start("api-server", [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)])
        self.wait("the API server", self.api_healthy, 600)
        self.start("scheduler", [AIRFLOW, "scheduler"])
        self.start("dag-processor", [AIRFLOW, "dag-processor"])
        for name in WORKERS:
            # Logs are read from the shared AIRFLOW_HOME (compose: the airflow-logs volume).
            self.start(name, [AIRFLOW, "celery", "worker", "--concurrency", "1", "--skip-serve-logs",
                              "--celery-hostname", f"{name}@%h"], MLRECIPES_TEST_HOSTNAME=name)
        self.wait("both workers", lambda: all(" ready." in self.log(n) for n in WORKERS), 600)
        self.wait("the scheduler", lambda: self.api_healthy("scheduler"), 600)
        self.wait("the DAG file parsed", lambda: int(self.sql(
            "SELECT count(*) FROM dag WHERE dag_id LIKE 'mlrecipes_%' AND NOT is_stale")[0][0]) == len(CONF), 600)

    def api_healthy(self, component: str = "metadatabase") -> bool:
        try:
            health = requests.get(f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return health.get(component, {}).get("status") == "healthy"

    def down(self) -> None:
        for name in ("scheduler", *WORKERS, "dag-processor", "api-server", "redis"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            for child in _tree(proc.pid):  # task processes run in sessions of their own
                child.send_signal(signal.SIGTERM)
            stop_group(proc, wait_s=60)
            for child in _tree(proc.pid):
                child.kill()

    def trigger(self, dag_runs: dict[str, tuple[str, dict]]) -> None:
        """{dag_id: (run_id, conf)}: unpaused and triggered, all at once."""
        def one(item):
            dag_id, (run_id, conf) = item
            self.airflow("dags", "unpause", dag_id)
            self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))

        with ThreadPoolExecutor(len(dag_runs)) as pool:
            list(pool.map(one, dag_runs.items()))

    def dag_run_states(self, run_ids: list[str]) -> dict[str, str]:
        ids = ",".join(f"'{r}'" for r in run_ids)
        return dict(self.sql(f"SELECT run_id, state FROM dag_run WHERE run_id IN ({ids})"))

    def task_instances(self, run_ids: list[str], table: str = "task_instance") -> list[dict]:
        ids = ",".join(f"'{r}'" for r in run_ids)
        rows = self.sql(f"SELECT dag_id, run_id, try_number, state, coalesce(hostname, ''), pool, "
                        f"coalesce(start_date::text, ''), coalesce(end_date::text, '') FROM {table} "
                        f"WHERE run_id IN ({ids}) ORDER BY try_number")
        keys = ("dag_id", "run_id", "try_number", "state", "hostname", "pool", "start", "end")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def cluster(postgres, tracking_server, tmp_path_factory):
    started = time.monotonic()
    c = Cluster(postgres, tracking_server, tmp_path_factory.mktemp("celery"))
    try:
        c.up()
        print(f"\ncelery cluster up in {time.monotonic() - started:.0f}s")
        yield c
    finally:
        c.down()


def dag_ids() -> dict[str, str]:
    from mlrecipes.schedule import load_schedule

    jobs = {j.name for j in load_schedule(profile="compose").existing() if j.entry_point == "main"}
    assert jobs == set(CONF), jobs  # every training DAG of the schedule is triggered
    return {job: f"mlrecipes_{job}" for job in sorted(jobs)}


def mlflow_run_of(server, dag_run_id: str, try_number: int | None = None) -> list[dict]:
    runs = [r for r in server.runs() if tags_of(r).get("airflow.dag_run_id") == dag_run_id]
    if try_number is not None:
        runs = [r for r in runs if tags_of(r).get("airflow.try_number") == str(try_number)]
    return runs


def test_six_dag_runs_at_once_spread_over_two_workers_within_the_pool(cluster):
    started = time.monotonic()
    dags = dag_ids()
    runs = {dag_id: (f"celery-{job}", CONF[job]) for job, dag_id in dags.items()}
    run_ids = [r for r, _ in runs.values()]
    cluster.trigger(runs)

    slots = int(cluster.sql("SELECT slots FROM slot_pool WHERE pool = 'mlrecipes_dl'")[0][0])
    peak = 0

    def done():
        nonlocal peak
        running = cluster.sql("SELECT count(*) FROM task_instance WHERE pool = 'mlrecipes_dl' AND state = 'running'")
        peak = max(peak, int(running[0][0]))
        states = cluster.dag_run_states(run_ids)
        return len(states) == len(run_ids) and all(s in ("success", "failed") for s in states.values()) and states

    states = cluster.wait("six DAG runs", done, RUN_TIMEOUT_S, interval=1.0)
    tis = cluster.task_instances(run_ids)
    print(f"six DAG runs: {time.monotonic() - started:.0f}s; tasks: "
          + ", ".join(f"{t['dag_id']}@{t['hostname']}" for t in tis) + f"; mlrecipes_dl peak {peak}/{slots}")
    assert set(states.values()) == {"success"}, (states, cluster.log("scheduler")[-3000:])

    assert {t["state"] for t in tis} == {"success"} and len(tis) == 6
    assert {t["hostname"] for t in tis} == set(WORKERS)  # both workers took tasks, and only they did

    dl = [t for t in tis if t["pool"] == "mlrecipes_dl"]
    assert len(dl) == 4
    # Never more deep-learning tasks running at once than the pool's slots: sampled while they
    # ran, and from their recorded start / end times.
    assert 1 <= peak <= slots
    events = sorted([(_time(t["start"]), 1) for t in dl] + [(_time(t["end"]), -1) for t in dl])
    running = overlap = 0
    for _, step in events:
        running += step
        overlap = max(overlap, running)
    assert overlap <= slots

    for job, dag_id in dags.items():
        (run,) = mlflow_run_of(cluster.server, f"celery-{job}")
        tags = tags_of(run)
        assert run["info"]["status"] == "FINISHED", (job, tags.get("mlrecipes.error"))
        assert tags["airflow.dag_id"] == dag_id and tags["airflow.try_number"] == "1"
        name, version = tags["registry.model"].split("/")
        mv = cluster.server.api("GET", "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version})
        assert mv["model_version"]["run_id"] == run["info"]["run_id"]


def test_a_worker_lost_mid_training_is_retried_on_the_other(cluster):
    started = time.monotonic()
    run_id = "celery-lost-worker"
    conf = {"limit": 300, "num_boost_round": 60, "early_stopping_rounds": 60, "overrides": "gate.threshold=0.0"}
    cluster.trigger({"mlrecipes_xgboost": (run_id, conf)})

    def training():  # try 1's train.py has logged per-round metrics
        runs = mlflow_run_of(cluster.server, run_id, 1)
        if not runs or runs[0]["info"]["status"] != "RUNNING":
            return None
        metrics = {m["key"] for m in runs[0]["data"].get("metrics", [])}
        return runs[0] if "validation-mlogloss" in metrics else None

    lost_run = cluster.wait("try 1 training", training, 1800, interval=1.0)
    (ti,) = cluster.task_instances([run_id])
    victim = ti["hostname"]
    assert victim in WORKERS and ti["state"] == "running"
    worker = cluster.procs[victim]
    tree = [psutil.Process(worker.pid), *_tree(worker.pid)]
    assert any("train.py" in " ".join(p.cmdline()) for p in tree if p.is_running())  # it trains right there
    cluster.lost.add(victim)
    for proc in tree:  # the host is gone: nothing gets a chance to clean up
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    worker.wait(timeout=60)
    killed_at = time.monotonic()

    def finished():
        state = cluster.dag_run_states([run_id]).get(run_id)
        return state if state in ("success", "failed") else None

    state = cluster.wait("the retry", finished, RUN_TIMEOUT_S)
    print(f"worker loss: killed {victim} after {killed_at - started:.0f}s; "
          f"DAG run {state} {time.monotonic() - killed_at:.0f}s later")
    assert state == "success", cluster.log("scheduler")[-3000:]

    (retried,) = cluster.task_instances([run_id])
    history = cluster.task_instances([run_id], table="task_instance_history")
    (other,) = set(WORKERS) - {victim}
    assert (retried["try_number"], retried["state"], retried["hostname"]) == ("2", "success", other)
    assert [(h["try_number"], h["hostname"]) for h in history] == [("1", victim)]
    assert history[0]["state"] != "success"

    (second,) = mlflow_run_of(cluster.server, run_id, 2)
    assert second["info"]["status"] == "FINISHED"
    lost = cluster.server.api("GET", "/api/2.0/mlflow/runs/get", params={"run_id": lost_run["info"]["run_id"]})["run"]
    assert lost["info"]["status"] == "FAILED"  # closed by the retry's own launch, not left RUNNING
    assert tags_of(lost)["mlrecipes.error"] == "lost: try 1 was given up by Airflow, retried as try 2"
