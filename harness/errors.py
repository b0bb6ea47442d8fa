"""User-facing errors.

Every problem caused by the user's input (a suite file, the model registry, a missing weights
file, an unreadable dataset row) is raised as a :class:`ShaktiError`.  The CLI prints it as one
line and exits with code 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class ShaktiError(Exception):
    """An error the user can fix: ``message`` says what is wrong, ``hint`` what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())


class ConfigError(ShaktiError):
    """A suite or registry file is malformed."""


class ModelUnavailable(ShaktiError):
    """A registry model's weights cannot be found."""


class BackendMissing(ShaktiError):
    """The Python package a backend needs is not installed."""


class DataUnavailable(ShaktiError):
    """A dataset could be found neither in the local mirror nor on the hub."""


class DataRowError(ShaktiError):
    """A dataset row lacks a field a task needs."""


class RunFileError(ShaktiError, ValueError):
    """A run or report file that cannot be read back or written (a ``ValueError`` too, so listings
    that skip unreadable runs keep doing so).  Raised by :mod:`harness.store` and the request cache."""


def pip_hint(extra: str, packages: str) -> str:
    """The one place that spells the install command for an optional feature."""
    return f"install it with: pip install -e '.[{extra}]' (or pip install {packages})"


class ServerUnreachable(ShaktiError):
    """A served model's endpoint stopped answering (connection refused, timeouts) after retries."""


class ServerError(ShaktiError):
    """A served model's endpoint answered, but not with what the request needs."""
