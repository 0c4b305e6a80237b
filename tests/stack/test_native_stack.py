"""The compose topology without Docker: PostgreSQL + authenticated MLflow tracking server + a real `mlflow run`.

PostgreSQL (Debian's packages, tests/stack/install_postgres.sh) runs a throw-away cluster on
127.0.0.1, initialised by the same script the compose stack mounts into the postgres image. The
tracking server runs with the flags of the compose file's `mlflow` service (PostgreSQL backend,
proxied artifacts, allowed hosts, basic-auth with compose/mlflow/basic_auth.ini), only addresses
and paths swapped; the stack's MLflow user is created by the compose file's one-shot script. The
xgboost project then runs through `mlflow run` as that user, and everything is checked over
MLflow's REST API.

    .venv/bin/python -m pytest -m stack tests/stack
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests
from native import FIXTURE_DATA, MLFLOW, REPO, tags_of

pytestmark = pytest.mark.stack


def list_artifacts(server, path: str) -> set[str]:
    """Through the server's artifact proxy (`mlflow-artifacts:/<path>`)."""
    files = server.api("GET", "/api/2.0/mlflow-artifacts/artifacts", auth=server.user,
                       params={"path": path}).get("files", [])
    return {f["path"] for f in files}


def test_project_runs_against_postgres_backed_tracking_server(postgres, tracking_server, tmp_path):
    server = tracking_server
    env = {**os.environ, **server.user_env(), "MLRECIPES_DATA_DIR": str(FIXTURE_DATA)}
    started = time.monotonic()
    proc = subprocess.run(
        [MLFLOW, "run", str(REPO / "projects" / "xgboost"), "--env-manager", "virtualenv",
         "--experiment-name", "stack-mlflow-run",
         # Its own registered model: the session's server already holds mnist-xgboost versions of
         # the other stack tests, and a champion among them could outscore this run at the gate.
         "-P", "overrides=gate.threshold=0.1 registry.model_name=stack-xgboost"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800,
    )
    print(f"mlflow run through the tracking server: {time.monotonic() - started:.1f}s wall")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = server.runs("stack-mlflow-run")
    assert len(runs) == 1
    info, tags = runs[0]["info"], tags_of(runs[0])
    run_id = info["run_id"]
    assert info["status"] == "FINISHED"
    assert tags["gate.decision"] == "promoted"

    # The run lives in PostgreSQL, read here over TCP with the mlflow role's password.
    stored = postgres.psql(f"SELECT status FROM runs WHERE run_uuid = '{run_id}'",
                           "mlflow", postgres.passwords["MLFLOW_DB_PASSWORD"])
    assert stored == "FINISHED"

    # Artifacts went through the server's proxy into its destination, not to a client-side path.
    prefix = "mlflow-artifacts:/"
    assert info["artifact_uri"].startswith(prefix)
    run_root = info["artifact_uri"][len(prefix):]
    evaluation = list_artifacts(server, f"{run_root}/evaluation")
    assert "confusion_matrix.png" in evaluation
    png = requests.get(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{run_root}/evaluation/confusion_matrix.png",
                       auth=server.user, timeout=30)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert (server.artifacts / run_root / "evaluation" / "confusion_matrix.png").is_file()

    # The registry: the run's version carries the `champion` alias, and its model is served too.
    name, version = tags["registry.model"].split("/")
    champion = server.api("GET", "/api/2.0/mlflow/registered-models/alias", auth=server.user,
                          params={"name": name, "alias": "champion"})["model_version"]
    assert (champion["version"], champion["run_id"]) == (version, run_id)
    assert "champion" in champion["aliases"]
    assert champion["source"].startswith("models:/")  # MLflow 3: the version points at a logged model
    model_id = champion["source"][len("models:/"):]
    model = server.api("GET", f"/api/2.0/mlflow/logged-models/{model_id}", auth=server.user)["model"]
    assert model["info"]["source_run_id"] == run_id
    model_root = model["info"]["artifact_uri"]
    assert model_root.startswith(prefix)
    assert "MLmodel" in list_artifacts(server, model_root[len(prefix):])
