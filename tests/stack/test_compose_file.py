"""docker-compose.yml checked by real parsers, no Docker engine needed.

- Debian's `docker-compose config` (Compose v1.29): interpolates `.env` the way `docker compose`
  does, validates against its own schema and prints the resolved file.
- The current compose-spec JSON schema, as vendored by check-jsonschema (`vendor.compose-spec`),
  on the file as written and as resolved.
System packages: tests/stack/install_postgres.sh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SECRETS = [
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "AIRFLOW_MLFLOW_PASSWORD",
    "MLFLOW_SECRET_KEY",
]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker"}
ONE_SHOT = {"airflow-init", "mlflow-users"}


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) missing: run tests/stack/install_postgres.sh"
    # Only PATH from the caller: no variable of the test's own environment may fill a gap in .env.
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "--profile", "celery", "config"],
        capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=120,
    )


def schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    """A complete .env, written by the generator the docs tell users to run."""
    target = tmp_path_factory.mktemp("env") / ".env"
    subprocess.run([sys.executable, str(REPO / "compose" / "make_env.py"), str(target)], check=True,
                   capture_output=True)
    return target


@pytest.fixture(scope="module")
def resolved(env_file, tmp_path_factory) -> dict:
    proc = compose_config(env_file)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path_factory.mktemp("resolved") / "docker-compose.resolved.yml"
    out.write_text(proc.stdout)
    return {"path": out, "config": yaml.safe_load(proc.stdout)}


def env_values(env_file: Path) -> dict[str, str]:
    lines = env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_validates_with_a_complete_env(resolved):
    services = set(resolved["config"]["services"])
    assert services == {"postgres", "mlflow", "redis", "dask-scheduler", "dask-worker"} | ONE_SHOT | AIRFLOW_SERVICES


def test_matches_the_compose_spec_schema(resolved):
    for path in (COMPOSE_FILE, resolved["path"]):
        proc = schema_check(path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_broken_file(tmp_path):
    """The schema check is not vacuous: a misspelt key fails it."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healtcheck:", 1))
    proc = schema_check(broken)
    assert proc.returncode != 0 and "healtcheck" in proc.stdout


@pytest.mark.parametrize("secret", SECRETS)
def test_refuses_to_start_without_a_secret_naming_it(env_file, tmp_path, secret):
    partial = tmp_path / ".env"
    partial.write_text("".join(f"{k}={v}\n" for k, v in env_values(env_file).items() if k != secret))
    proc = compose_config(partial)
    assert proc.returncode != 0
    # Compose prints "...: <message>" where the message is the one in `${VAR:?message}`.
    assert proc.stderr.strip().endswith(f": set {secret} in .env (see .env.example)"), proc.stderr


def test_the_unfilled_example_env_refuses_to_start():
    proc = compose_config(REPO / ".env.example")
    assert proc.returncode != 0
    assert re.search(r": set (\w+) in \.env \(see \.env\.example\)$", proc.stderr.strip()), proc.stderr


def test_example_env_lists_every_secret_empty():
    example = env_values(REPO / ".env.example")
    assert {s: example.get(s) for s in SECRETS} == {s: "" for s in SECRETS}


def test_every_secret_reference_is_mandatory():
    """Each use of a secret is `${VAR:?...}`: none can fall back to a default or to empty."""
    text = COMPOSE_FILE.read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"(\W[^}]*)?\}", text)
        assert uses, f"{secret} not used"
        assert all(u.startswith(":?") for u in uses), (secret, uses)


def test_secret_settings_come_from_env(resolved, env_file):
    """Every password, key and database URL in the resolved file carries a value from .env."""
    values = set(env_values(env_file).values())
    secretish = re.compile(r"PASSWORD|SECRET|FERNET|SQL_ALCHEMY_CONN|RESULT_BACKEND")
    checked = 0
    for name, service in resolved["config"]["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key) and "USERNAME" not in key:
                assert any(v and v in str(value) for v in values), (name, key)
                checked += 1
    assert checked >= len(SECRETS)


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) for each port; short ("ip:host:container") or long syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", parts[-2] if len(parts) > 1 else "", parts[-1]))
    return out


def test_every_published_port_is_bound_to_loopback(resolved):
    ports = {name: published_ports(s) for name, s in resolved["config"]["services"].items()}
    assert ports["airflow-apiserver"] == [("127.0.0.1", "8080", "8080")]
    assert ports["mlflow"] == [("127.0.0.1", "5000", "5000")]
    for name, bound in ports.items():
        assert all(ip == "127.0.0.1" for ip, _, _ in bound), (name, bound)


def test_every_long_running_service_has_a_healthcheck(resolved):
    services = resolved["config"]["services"]
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "restart" not in service and "healthcheck" not in service, name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "always", name


def test_services_wait_for_what_they_need(resolved):
    services = resolved["config"]["services"]
    for name, service in services.items():
        deps = service.get("depends_on", {})
        for dep, how in deps.items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert how["condition"] == expected, (name, dep, how)
    for name in AIRFLOW_SERVICES:
        assert {"airflow-init", "postgres", "mlflow", "mlflow-users"} <= set(services[name]["depends_on"]), name
    assert set(services["mlflow"]["depends_on"]) == {"postgres"}
    assert set(services["mlflow-users"]["depends_on"]) == {"mlflow"}


def test_airflow_sees_the_repository_read_only_and_the_stack_profile(resolved):
    services = resolved["config"]["services"]
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        service = services[name]
        assert f"{REPO}:/opt/mlrecipes:ro" in service["volumes"], name
        assert any(v.startswith("mlflow-envs:") for v in service["volumes"]), name
        env = service["environment"]
        assert env["MLRECIPES_PROFILE"] == "compose"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/mlrecipes/airflow/dags"
        assert env["MLFLOW_ENV_ROOT"].startswith("/opt/mlflow-envs/")


def test_mlflow_server_accepts_the_host_the_tasks_use(resolved):
    services = resolved["config"]["services"]
    tracking = services["airflow-scheduler"]["environment"]["MLFLOW_TRACKING_URI"]
    host = re.match(r"http://([^/]+)$", tracking).group(1)
    flags = dict(a.split("=", 1) for a in services["mlflow"]["command"] if "=" in a)
    assert host in flags["--allowed-hosts"].split(",")
    assert host.split(":")[0] in services  # the tracking URI names the compose service
    assert "--serve-artifacts" in services["mlflow"]["command"]
    # The driver is named (SQLAlchemy 2.1 would pick psycopg 3) and the password is not in the
    # URI: libpq reads it from PGPASSWORD, which comes from .env.
    assert re.fullmatch(r"postgresql\+psycopg2://mlflow@postgres:5432/mlflow", flags["--backend-store-uri"])
    assert services["mlflow"]["environment"]["PGPASSWORD"]


def _under_writable_volume(service: dict, path: str) -> bool:
    mounts = [v.split(":") for v in service["volumes"]]
    targets = [m[1] for m in mounts if not m[0].startswith("/") and (len(m) < 3 or m[2] != "ro")]
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in targets)


def test_schedule_compose_profile_fits_the_containers(resolved):
    """The DAG's `compose` profile points where the containers have things: the tracking server
    service, and environments (plus uv's Pythons and cache) on a writable named volume."""
    from mlrecipes.schedule import load_schedule

    services = resolved["config"]["services"]
    for name in AIRFLOW_SERVICES:
        service, env = services[name], services[name]["environment"]
        for job in load_schedule(profile=env["MLRECIPES_PROFILE"]).jobs.values():
            assert job.resolved_tracking_uri() == env["MLFLOW_TRACKING_URI"], job.name
            assert job.env_manager == "uv", job.name  # the image has uv, not pyenv
            paths = {"env_root": job.env_root or env["MLFLOW_ENV_ROOT"]}
            for var in ("UV_PYTHON_INSTALL_DIR", "UV_CACHE_DIR"):
                paths[var] = job.env.get(var, env.get(var))
            for what, path in paths.items():
                assert path and _under_writable_volume(service, path), (name, job.name, what, path)


def test_images_pin_the_mlflow_the_projects_use():
    """Server, Airflow's client and the projects' environments speak one MLflow version."""
    # Each environment installs its lock (python_env.yaml: -r requirements*.lock).
    locks = list((REPO / "projects").glob("*/requirements*.lock"))
    pins = {line.split()[0] for lock in locks for line in lock.read_text().splitlines() if line.startswith("mlflow==")}
    assert len(locks) >= 4 and len(pins) == 1, pins
    for dockerfile in (REPO / "airflow" / "Dockerfile", REPO / "compose" / "mlflow" / "Dockerfile"):
        found = [m.replace("[auth]", "") for m in re.findall(r"mlflow(?:\[auth\])?==[\w.]+", dockerfile.read_text())]
        assert found == list(pins), dockerfile


def test_make_env_never_overwrites(env_file):
    proc = subprocess.run([sys.executable, str(REPO / "compose" / "make_env.py"), str(env_file)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "exists" in proc.stderr
    values = env_values(env_file)
    assert all(re.fullmatch(r"[A-Za-z0-9_=-]+", values[s]) for s in SECRETS)  # URL-safe


def test_the_docs_name_what_the_file_has(resolved):
    """docs/stack.md (the README's "Run the full stack"): its services and settings exist."""
    doc = (REPO / "docs" / "stack.md").read_text()
    services = set(resolved["config"]["services"])
    named = re.findall(r"docker compose (?:exec|logs -f|ps) ([a-z][\w-]+)|--scale ([\w-]+)=", doc)
    assert named
    for service in filter(None, (n for pair in named for n in pair)):
        assert service in services, service
    settings = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    for setting in set(re.findall(r"^([A-Z][A-Z0-9_]+)=", doc, re.M)) | set(re.findall(r"`([A-Z][A-Z0-9_]+)`", doc)):
        assert setting in settings or setting.startswith(("MLRECIPES_", "MLFLOW_")), setting


def test_mlflow_asks_for_a_login_and_airflow_is_not_its_admin(resolved, env_file):
    """basic-auth on the server; the admin's password reaches the server and the one-shot user
    script only; every Airflow service logs in as its own, non-admin MLflow user."""
    services, values = resolved["config"]["services"], env_values(env_file)
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == values["MLFLOW_ADMIN_PASSWORD"]
    assert mlflow["environment"]["MLFLOW_FLASK_SERVER_SECRET_KEY"] == values["MLFLOW_SECRET_KEY"]
    ini = mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    assert f"{REPO}/compose/mlflow/basic_auth.ini:{ini}:ro" in mlflow["volumes"]
    for name, service in services.items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        holds_admin = any(values["MLFLOW_ADMIN_PASSWORD"] in v for v in env.values())
        assert holds_admin == (name in {"mlflow", "mlflow-users"}), name
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_USERNAME"] == values["AIRFLOW_MLFLOW_USER"] != values["MLFLOW_ADMIN_USER"]
        assert env["MLFLOW_TRACKING_PASSWORD"] == values["AIRFLOW_MLFLOW_PASSWORD"]
    users = services["mlflow-users"]["environment"]
    assert (users["AIRFLOW_MLFLOW_USERNAME"], users["AIRFLOW_MLFLOW_PASSWORD"]) == (
        values["AIRFLOW_MLFLOW_USER"], values["AIRFLOW_MLFLOW_PASSWORD"])
