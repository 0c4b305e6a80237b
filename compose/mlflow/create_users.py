"""Create or update the MLflow users of the stack: `mlflow-users`, a one-shot compose service.

    MLFLOW_TRACKING_URI=http://mlflow:5000 \
    MLFLOW_TRACKING_USERNAME=<admin> MLFLOW_TRACKING_PASSWORD=<admin password> \
    MLRECIPES_MLFLOW_USERS=AIRFLOW python create_users.py
    # reads AIRFLOW_MLFLOW_USERNAME / AIRFLOW_MLFLOW_PASSWORD for each name in MLRECIPES_MLFLOW_USERS

Each user is an ordinary (not admin) user: it may create experiments and registered models and
MANAGEs what it created; it READs the rest (default_permission in basic_auth.ini). Idempotent: an
existing user gets the password from the environment and loses admin rights. Passwords are
read from the environment only and never printed.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    admin = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    for prefix in filter(None, os.environ.get("MLRECIPES_MLFLOW_USERS", "").split(",")):
        username = os.environ.get(f"{prefix}_MLFLOW_USERNAME", "")
        password = os.environ.get(f"{prefix}_MLFLOW_PASSWORD", "")
        if not username or not password:
            print(f"error: set {prefix}_MLFLOW_USERNAME and {prefix}_MLFLOW_PASSWORD", file=sys.stderr)
            return 2
        if username == admin:
            print(f"error: {prefix}_MLFLOW_USERNAME must not be the admin ({admin})", file=sys.stderr)
            return 2
        try:
            client.create_user(username, password)
            print(f"mlflow user {username}: created")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                print(f"error: mlflow user {username}: {str(exc.message).splitlines()[0]}", file=sys.stderr)
                return 1
            client.update_user_password(username, password)
            client.update_user_admin(username, False)
            print(f"mlflow user {username}: exists, password updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
