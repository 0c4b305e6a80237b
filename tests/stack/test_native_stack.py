"""The compose topology without Docker: PostgreSQL + MLflow tracking server + a real `mlflow run`.

PostgreSQL (Debian's packages, tests/stack/install_postgres.sh) runs a throw-away cluster on
127.0.0.1, initialised by the same script the compose stack mounts into the postgres image. The
tracking server runs with the flags of the compose file's `mlflow` service (PostgreSQL backend,
proxied artifacts, allowed hosts), only addresses and paths swapped. The xgboost project then runs
through `mlflow run` against it, and everything is checked over MLflow's REST API.

    .venv/bin/python -m pytest -m stack
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = REPO / "tests" / "fixtures"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
PASSWORDS = {"AIRFLOW_DB_PASSWORD": "airflow-test-pw", "MLFLOW_DB_PASSWORD": "mlflow-test-pw"}
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    assert found, "PostgreSQL server not installed: run tests/stack/install_postgres.sh"
    return Path(found[-1]).parent


@dataclass
class Postgres:
    port: int
    socket_dir: Path
    bindir: Path

    def psql(self, sql: str, user: str, password: str) -> str:
        """Over TCP with a password, the way the MLflow server connects."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user,
             "-d", user, "-tAc", sql],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()


@pytest.fixture(scope="module")
def postgres():
    bindir = pg_bindir()
    # Not under pytest's tmp dir: its parents are private to root, and as root the server has to
    # run as the `postgres` user, who must reach the data directory.
    root = Path(tempfile.mkdtemp(prefix="mlrecipes-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    pwfile = root / "pw"
    pwfile.write_text("superuser-test-pw\n")
    if as_owner:
        shutil.chown(pwfile, "postgres", "postgres")

    def run(*argv: str) -> None:
        proc = subprocess.run([*as_owner, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{argv[0]} failed:\n{proc.stdout}\n{proc.stderr}"

    # Like the postgres image: trust on the local socket (init script), passwords over TCP.
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
        "-o", f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}", "start")
    try:
        init = subprocess.run(
            ["bash", str(REPO / "compose" / "postgres" / "init-databases.sh")],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, **PASSWORDS, "PATH": f"{bindir}:{os.environ['PATH']}",
                 "PGHOST": str(root), "PGPORT": str(port),
                 "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"},
        )
        assert init.returncode == 0, init.stderr
        yield Postgres(port, root, bindir)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def compose_mlflow_flags() -> dict[str, str | None]:
    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    flags: dict[str, str | None] = {}
    for arg in command[2:]:
        key, _, value = arg.partition("=")
        flags[key] = value or None
    return flags


@pytest.fixture(scope="module")
def tracking_server(postgres, tmp_path_factory):
    work = tmp_path_factory.mktemp("mlflow-server")
    artifacts, port = work / "mlartifacts", free_port()
    flags = {
        **compose_mlflow_flags(),
        "--backend-store-uri": f"postgresql+psycopg2://mlflow@127.0.0.1:{postgres.port}/mlflow",
        "--artifacts-destination": str(artifacts),
        "--host": "127.0.0.1",
        "--port": str(port),
        "--workers": "1",
    }
    argv = [MLFLOW, "server"] + [k if v is None else f"{k}={v}" for k, v in flags.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PGPASSWORD"] = PASSWORDS["MLFLOW_DB_PASSWORD"]  # as in compose: not in the URI
    log = work / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"mlflow server exited:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not healthy:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield {"url": url, "artifacts": artifacts, "log": log}
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn workers
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def api(url: str, method: str, path: str, **kw) -> dict:
    resp = requests.request(method, f"{url}{path}", timeout=30, **kw)
    assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
    return resp.json()


def list_artifacts(url: str, path: str) -> set[str]:
    """Through the server's artifact proxy (`mlflow-artifacts:/<path>`)."""
    files = api(url, "GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": path}).get("files", [])
    return {f["path"] for f in files}


def test_project_runs_against_postgres_backed_tracking_server(postgres, tracking_server, tmp_path):
    url = tracking_server["url"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    started = time.monotonic()
    proc = subprocess.run(
        [MLFLOW, "run", str(REPO / "projects" / "xgboost"), "--env-manager", "virtualenv",
         "--experiment-name", "mnist", "-P", "overrides=gate.threshold=0.1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800,
    )
    print(f"mlflow run through the tracking server: {time.monotonic() - started:.1f}s wall")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    experiment = api(url, "GET", "/api/2.0/mlflow/experiments/get-by-name",
                     params={"experiment_name": "mnist"})["experiment"]
    runs = api(url, "POST", "/api/2.0/mlflow/runs/search",
               json={"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 1
    info, tags = runs[0]["info"], {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    run_id = info["run_id"]
    assert info["status"] == "FINISHED"
    assert tags["mlflow.project.backend"] == "local" and tags["gate.decision"] == "promoted"

    # The run lives in PostgreSQL, read here over TCP with the mlflow role's password.
    stored = postgres.psql(f"SELECT status FROM runs WHERE run_uuid = '{run_id}'",
                           "mlflow", PASSWORDS["MLFLOW_DB_PASSWORD"])
    assert stored == "FINISHED"

    # Artifacts went through the server's proxy into its destination, not to a client-side path.
    prefix = "mlflow-artifacts:/"
    assert info["artifact_uri"].startswith(prefix)
    run_root = info["artifact_uri"][len(prefix):]
    evaluation = list_artifacts(url, f"{run_root}/evaluation")
    assert "confusion_matrix.png" in evaluation
    png = requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/{run_root}/evaluation/confusion_matrix.png",
                       timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert (tracking_server["artifacts"] / run_root / "evaluation" / "confusion_matrix.png").is_file()

    # The registry: the run's version carries the `champion` alias, and its model is served too.
    name, version = tags["registry.model"].split("/")
    champion = api(url, "GET", "/api/2.0/mlflow/registered-models/alias",
                   params={"name": name, "alias": "champion"})["model_version"]
    assert (champion["version"], champion["run_id"]) == (version, run_id)
    assert "champion" in champion["aliases"]
    assert champion["source"].startswith("models:/")  # MLflow 3: the version points at a logged model
    model_id = champion["source"][len("models:/"):]
    model = api(url, "GET", f"/api/2.0/mlflow/logged-models/{model_id}")["model"]
    assert model["info"]["source_run_id"] == run_id
    model_root = model["info"]["artifact_uri"]
    assert model_root.startswith(prefix)
    assert "MLmodel" in list_artifacts(url, model_root[len(prefix):])
