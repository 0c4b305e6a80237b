"""Errors a user can cause: they end the run with one readable line, not a traceback."""


class UserError(Exception):
    """Bad parameter, bad override, missing or corrupt data, unreachable service."""


def require(condition: bool, message: str) -> None:
    """Raise a UserError with `message` unless `condition` holds."""
    if not condition:
        raise UserError(message)
