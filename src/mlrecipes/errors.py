"""Errors a user can cause: they end the run with one readable line, not a traceback."""

import os
import sys
import warnings

# Exit codes shared by train.py (recipe) and the launcher/DAG: 2 tells Airflow a retry cannot help.
EXIT_USER_ERROR = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a terminated process


def readable_output() -> None:
    """For a run's process (train.py, a sweep, scoring): stdout line-buffered even when piped, so
    Airflow task logs and CI show progress as it happens; and no "Downloading artifacts" bars,
    which MLflow draws when it reads a model back (logging one checks it can serve its input
    example; scoring loads one) and which say nothing to a user."""
    sys.stdout.reconfigure(line_buffering=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Loading a table model logged before table_model's `predict` had a type hint (scoring, the
    # gate re-scoring a champion): MLflow warns while it reads the class.
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")


def exit_now(code: int):
    """sys.exit(code) without the interpreter's last garbage collections, for a process whose work
    is done: with MLflow, SQLAlchemy and a framework loaded they take 0.7-1 s, and every run pays
    them in two processes (the launcher, train.py). atexit handlers (logging's flush, MLflow's) and
    module teardown still run; only the collection of what the process is about to drop is skipped."""
    import gc

    gc.freeze()
    sys.exit(code)


class UserError(Exception):
    """Bad parameter, bad override, missing or corrupt data, unreachable service."""


def require(condition: bool, message: str) -> None:
    """Raise a UserError with `message` unless `condition` holds."""
    if not condition:
        raise UserError(message)


def one_line(text: str) -> str:
    """The first non-empty line of a message, for a one-line error or an MLflow tag."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


GUIDE = "docs/troubleshooting.md"


def see(anchor: str) -> str:
    """A pointer to a section of the troubleshooting guide, appended to an error message.

    `anchor` is the section heading's GitHub anchor; tests/unit/test_troubleshooting.py keeps
    every anchor used in src/ in step with the guide's headings.
    """
    return f" (see {GUIDE}#{anchor})"


def store_see(text: str) -> str:
    """The guide's section for a failure to use the tracking store, picked from its message."""
    locked = "database is locked" in text or "_alembic_tmp" in text
    return see("sqlite-database-is-locked") if locked else see("the-tracking-server-is-unreachable")


# ---------------------------------------------------------------- the tracking server's answers
#
# MLflow's REST client raises MlflowException for all of these; the launcher and the recipe turn
# them into one line. Told apart by what MLflow puts in the exception (no mlflow import here).

_UNREACHABLE = ("Max retries exceeded", "Connection refused", "failed with exception",
                "failed with timeout exception", "Connection aborted", "RemoteDisconnected")


def tracking_failure(exc: BaseException, uri: str) -> tuple[str, int] | None:
    """(one-line message, exit code) when `exc` says the tracking server refused the login,
    denied a permission or could not be reached; None for any other error. The user named is the
    one MLflow logs in as: MLFLOW_TRACKING_USERNAME.

    Login and permission problems are user errors (exit 2: a retry cannot help); an unreachable
    server exits 1, so Airflow retries once the server is back.
    """
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    text = str(getattr(exc, "message", exc))
    code = str(getattr(exc, "error_code", ""))
    if "error code 401" in text or code == "UNAUTHENTICATED":
        if not username:
            return (f"the tracking server {uri} asks for a login: set MLFLOW_TRACKING_USERNAME and "
                    f"MLFLOW_TRACKING_PASSWORD{see('the-tracking-server-asks-for-a-login')}", EXIT_USER_ERROR)
        return (f"the tracking server {uri} rejected the login of user {username!r}: check "
                f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                f"{see('the-tracking-server-asks-for-a-login')}", EXIT_USER_ERROR)
    if "error code 403" in text or code == "PERMISSION_DENIED":
        return (f"the tracking server {uri} denied user {username!r} a permission: {one_line(text)[:200]}"
                f"{see('the-tracking-server-denies-a-permission')}", EXIT_USER_ERROR)
    if any(marker in text for marker in _UNREACHABLE):
        return (f"the tracking server {uri} did not answer within the retry budget "
                f"(MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR): {_reason(text)}"
                f"{see('the-tracking-server-is-unreachable')}", 1)
    return None


def _reason(text: str) -> str:
    """The innermost cause of a requests/urllib3 failure, e.g. 'Connection refused'."""
    for marker in ("Connection refused", "Read timed out", "RemoteDisconnected", "Connection aborted"):
        if marker in text:
            return marker
    return one_line(text)[:200]
