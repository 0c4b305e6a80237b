"""Errors a user can cause: they end the run with one readable line, not a traceback."""

# Exit codes shared by train.py (recipe) and the launcher/DAG: 2 tells Airflow a retry cannot help.
EXIT_USER_ERROR = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a terminated process


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
