"""The compose topology without Docker, as building blocks for tests/stack.

- PostgreSQL (Debian's packages, tests/stack/install_postgres.sh): a throw-away cluster on
  127.0.0.1, initialised by the same script the compose stack mounts into the postgres image.
- The MLflow tracking server with the flags and the basic-auth config of the compose file's
  `mlflow` service (only addresses and paths swapped), its admin from the environment like
  compose's, and the stack's users created by the same one-shot script (compose/mlflow/create_users.py).
- Redis (Debian's redis-server, tests/stack/install_redis.sh) for the Celery test.

Everything binds 127.0.0.1 on free ports; each server runs in its own session and is stopped by
signalling that session only.
"""

from __future__ import annotations

import configparser
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DATA = REPO / "tests" / "fixtures"
VENV_BIN = Path(sys.executable).parent
MLFLOW = str(VENV_BIN / "mlflow")
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret() -> str:
    return secrets.token_hex(16)


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    assert found, "PostgreSQL server not installed: run tests/stack/install_postgres.sh"
    return Path(found[-1]).parent


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 30) -> None:
    """Signal the process's own session (started with start_new_session) and wait for it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class Postgres:
    port: int
    socket_dir: Path
    bindir: Path
    passwords: dict[str, str]

    def psql(self, sql: str, user: str, password: str, database: str | None = None) -> str:
        """Over TCP with a password, the way the MLflow server and Airflow connect."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user,
             "-d", database or user, "-tAc", sql],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()


def start_postgres():
    """Generator: yields a running Postgres with the compose init script applied; stops it after."""
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
    pwfile.write_text(secret() + "\n")
    if as_owner:
        shutil.chown(pwfile, "postgres", "postgres")
    passwords = {"AIRFLOW_DB_PASSWORD": secret(), "MLFLOW_DB_PASSWORD": secret()}

    def run(*argv: str) -> None:
        proc = subprocess.run([*as_owner, *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{argv[0]} failed:\n{proc.stdout}\n{proc.stderr}"

    # Like the postgres image: trust on the local socket (init script), passwords over TCP.
    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
        "-o", f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
              "-c max_connections=200", "start")
    try:
        init = subprocess.run(
            ["bash", str(REPO / "compose" / "postgres" / "init-databases.sh")],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, **passwords, "PATH": f"{bindir}:{os.environ['PATH']}",
                 "PGHOST": str(root), "PGPORT": str(port),
                 "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"},
        )
        assert init.returncode == 0, init.stderr
        yield Postgres(port, root, bindir, passwords)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- the compose file


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def compose_mlflow_flags() -> dict[str, str | None]:
    command = compose()["services"]["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    flags: dict[str, str | None] = {}
    for arg in command[2:]:
        key, _, value = arg.partition("=")
        flags[key] = value or None
    return flags


def compose_auth_ini(database_uri: str) -> str:
    """compose/mlflow/basic_auth.ini with only its database swapped for the native one."""
    config = configparser.ConfigParser()
    config.read(REPO / "compose" / "mlflow" / "basic_auth.ini")
    assert config["mlflow"]["database_uri"].startswith("postgresql+psycopg2://mlflow@postgres:5432/")
    config["mlflow"]["database_uri"] = database_uri
    assert "admin_password" not in config["mlflow"]  # the admin's password comes from .env only
    out = []
    for key, value in config["mlflow"].items():
        out.append(f"{key} = {value}")
    return "[mlflow]\n" + "\n".join(out) + "\n"


# ---------------------------------------------------------------- MLflow tracking server


@dataclass
class TrackingServer:
    """`mlflow server` as the compose `mlflow` service runs it; stop() and start() keep its port."""

    postgres: Postgres
    work: Path
    port: int = field(default_factory=free_port)
    admin: tuple[str, str] = ("admin", "")
    user: tuple[str, str] = ("airflow", "")
    proc: subprocess.Popen | None = None
    starts: int = 0
    secret_key: str = field(default_factory=secret)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        return self.work / "mlartifacts"

    @property
    def log(self) -> Path:
        return self.work / "server.log"

    def user_env(self) -> dict[str, str]:
        """What a client running as the stack's job user (Airflow's) sets."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.user[0],
                "MLFLOW_TRACKING_PASSWORD": self.user[1]}

    def secrets(self) -> list[str]:
        return [self.admin[1], self.user[1], self.secret_key, *self.postgres.passwords.values()]

    def start(self) -> None:
        pg = f"127.0.0.1:{self.postgres.port}"
        ini = self.work / "basic_auth.ini"
        ini.write_text(compose_auth_ini(f"postgresql+psycopg2://mlflow@{pg}/mlflow_auth"))
        flags = {
            **compose_mlflow_flags(),
            "--backend-store-uri": f"postgresql+psycopg2://mlflow@{pg}/mlflow",
            "--artifacts-destination": str(self.artifacts),
            "--host": "127.0.0.1",
            "--port": str(self.port),
            "--workers": "1",
        }
        argv = [MLFLOW, "server"] + [k if v is None else f"{k}={v}" for k, v in flags.items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        service_env = compose()["services"]["mlflow"]["environment"]
        # The service's literal settings as they are; those from .env or paths swapped below.
        env.update({k: str(v) for k, v in service_env.items() if "${" not in str(v)})
        env.update({
            "PGPASSWORD": self.postgres.passwords["MLFLOW_DB_PASSWORD"],  # as in compose: not in the URI
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.admin[0],
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key,
        })
        assert {"PGPASSWORD", "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME",
                "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= set(service_env)
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.work, env=env,
                                         start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.proc.poll() is None, f"mlflow server exited:\n{self.log.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not healthy:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)  # the server and its uvicorn workers
            self.proc = None

    def create_users(self) -> str:
        """The compose `mlflow-users` service's script, with that service's environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update({"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.admin[0],
                    "MLFLOW_TRACKING_PASSWORD": self.admin[1], "MLRECIPES_MLFLOW_USERS": "AIRFLOW",
                    "AIRFLOW_MLFLOW_USERNAME": self.user[0], "AIRFLOW_MLFLOW_PASSWORD": self.user[1]})
        proc = subprocess.run([sys.executable, str(REPO / "compose" / "mlflow" / "create_users.py")],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def api(self, method: str, path: str, auth: tuple[str, str] | None = None, **kw) -> dict:
        """A REST call, by default as the admin."""
        resp = requests.request(method, f"{self.url}{path}", timeout=30, auth=auth or self.admin, **kw)
        assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def runs(self, experiment: str = "mnist") -> list[dict]:
        resp = requests.get(f"{self.url}/api/2.0/mlflow/experiments/get-by-name", auth=self.admin,
                            params={"experiment_name": experiment}, timeout=30)
        if resp.status_code == 404:
            return []
        assert resp.status_code == 200, resp.text
        exp_id = resp.json()["experiment"]["experiment_id"]
        return self.api("POST", "/api/2.0/mlflow/runs/search",
                        json={"experiment_ids": [exp_id], "max_results": 1000}).get("runs", [])


def start_tracking_server(postgres: Postgres, work: Path):
    """Generator: a running authenticated server with the stack's users; stops it after."""
    server = TrackingServer(postgres, work, admin=("admin", secret()), user=("airflow", secret()))
    try:
        server.start()
        server.create_users()
        yield server
    finally:
        server.stop()


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params_of(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


# ---------------------------------------------------------------- what a run left behind


def artifact_files(server: TrackingServer, root_uri: str) -> dict[str, bytes]:
    """Every file under an `mlflow-artifacts:/...` URI, read through the server's proxy."""
    prefix = "mlflow-artifacts:/"
    assert root_uri.startswith(prefix), root_uri
    out, todo = {}, [root_uri[len(prefix):]]
    while todo:
        path = todo.pop()
        listing = server.api("GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": path})
        for f in listing.get("files", []):
            child = f"{path}/{f['path']}"
            if f.get("is_dir"):
                todo.append(child)
            else:
                resp = requests.get(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{child}",
                                    auth=server.admin, timeout=60)
                assert resp.status_code == 200, child
                out[child] = resp.content
    return out


def assert_no_secret_leaks(server: TrackingServer, run_id: str, logs: list[str]) -> list[str]:
    """No password or key of the stack in the run's params, tags, artifacts (its logged models'
    too) nor in the given logs; returns the places searched."""
    run = server.api("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})["run"]
    places: dict[str, bytes] = {"params": repr(params_of(run)).encode(), "tags": repr(tags_of(run)).encode()}
    places.update(artifact_files(server, run["info"]["artifact_uri"]))
    models = server.api("POST", "/api/2.0/mlflow/logged-models/search",
                        json={"experiment_ids": [run["info"]["experiment_id"]],
                              "filter": f"source_run_id = '{run_id}'"}).get("models", [])
    for model in models:
        places.update(artifact_files(server, model["info"]["artifact_uri"]))
        places[f"model {model['info']['model_id']} tags/params"] = repr(model).encode()
    versions = server.api("GET", "/api/2.0/mlflow/model-versions/search",
                          params={"filter": f"run_id = '{run_id}'"}).get("model_versions", [])
    places.update({f"version {v['name']}/{v['version']}": repr(v).encode() for v in versions})
    places.update({f"log {i}": text.encode() for i, text in enumerate(logs)})
    for value in server.secrets():
        assert len(value) >= 16
        leaks = [where for where, content in places.items() if value.encode() in content]
        assert not leaks, f"a secret appears in {leaks}"
    return list(places)
