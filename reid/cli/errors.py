"""Errors the ``reid`` command reports as one clear line, without a traceback."""


class UserFacingError(RuntimeError):
    """An error whose message is enough for the user (bad input, missing data): no traceback."""
