"""What the compose stack's airflow-init runs after the migration, run here with the real Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def test_create_pools_sets_the_schedules_pools(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "MLRECIPES_PROFILE": "compose",  # as docker-compose.yml sets it
    }

    def run(*argv: str) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    run("airflow", "db", "migrate")
    run("bash", str(REPO / "compose" / "airflow" / "create-pools.sh"))
    run("bash", str(REPO / "compose" / "airflow" / "create-pools.sh"))  # again: updates, no error
    expected = yaml.safe_load((REPO / "conf" / "schedule.yaml").read_text())["pools"]
    assert expected
    got = {p["pool"]: p for p in json.loads(run("airflow", "pools", "list", "--output", "json"))}
    for name, pool in expected.items():
        assert int(got[name]["slots"]) == pool["slots"], got[name]
        assert got[name]["description"] == pool.get("description", "")
