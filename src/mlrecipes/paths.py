"""Where things are: the repository and the defaults derived from it (stdlib only).

The shared code and config are read from the checkout at run time (src/mlrecipes/paths.py ->
the repository root), so a project always runs the code and config of the checkout it was
started from. Every module asks here instead of deriving the root itself.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_CONF = REPO_ROOT / "conf"

# The embedded store when neither a command nor $MLFLOW_TRACKING_URI names one (store.tracking_uri).
DEFAULT_STORE = REPO_ROOT / "mlflow.db"
DEFAULT_TRACKING_URI = f"sqlite:///{DEFAULT_STORE}"

# The data cache root when neither the data group nor $MLRECIPES_DATA_DIR names one.
DEFAULT_DATA_DIR = "~/.cache/mlrecipes"
