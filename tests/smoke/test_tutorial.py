"""docs/tutorial.md, run as written: its bash blocks marked `<!-- tutorial -->`, in order, in one
shell from the repository's root, with WORK (every file the tutorial writes) in a temporary
directory. A command that no longer works fails this test, so the tutorial cannot rot.

Real runs: two trainings and one scoring of the lightgbm project on the synthetic tick table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.smoke

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"


def blocks(text: str) -> list[str]:
    """The fenced ```bash blocks that follow a `<!-- tutorial -->` line."""
    return re.findall(r"^<!-- tutorial -->\n```bash\n(.*?)^```$", text, re.M | re.S)


def test_the_tutorial_marks_its_commands():
    found = blocks(TUTORIAL.read_text())
    assert len(found) >= 5
    assert any("mlrecipes run" in b for b in found) and any("mlrecipes score" in b for b in found)


def test_the_tutorial_runs_as_written(tmp_path):
    script = "set -euo pipefail\n" + "\n".join(blocks(TUTORIAL.read_text()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "MLRECIPES_"))}  # the page sets what it needs
    env["WORK"] = str(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    listed = [line for line in proc.stdout.splitlines() if line.startswith("ticks_weekly ")]
    assert listed and listed[0].rstrip().endswith("ready"), listed  # as the page says `list` shows

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("ticks-lightgbm", "champion")
    assert champion.tags["gate.passed"] == "true"
    scored = list((tmp_path / "data" / "predictions" / "ticks").glob("date=2026-01-05/symbol=*/*.parquet"))
    assert scored, proc.stdout[-2000:]
    assert "005930" in proc.stdout  # read back with the symbol as a string
