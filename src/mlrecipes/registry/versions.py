"""Reading the registry: a model's versions, the version holding an alias, a version's run."""

from __future__ import annotations

from mlrecipes.errors import UserError


def holder(client, name: str, alias: str):
    """The model version holding `alias`, or None (no such model or no alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def get_run(client, run_id: str | None):
    """The run `run_id`, or None (no run id, or the run is gone)."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:  # the run is gone
        return None


def model_versions(client, name: str) -> list:
    """Every version of model `name`; no such model is a UserError."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"no registered model {name!r} in {client.tracking_uri}") from None
        raise
    escaped = name.replace("'", "\\'")
    return client.search_model_versions(f"name='{escaped}'")


def version_of(name: str, version: str, versions: list):
    """The version numbered `version` among `versions`; an unknown number is a UserError."""
    by_number = {str(v.version): v for v in versions}
    if str(version) not in by_number:
        known = ", ".join(sorted(by_number, key=int)) or "none"
        raise UserError(f"{name} has no version {version}; versions: {known}")
    return by_number[str(version)]

