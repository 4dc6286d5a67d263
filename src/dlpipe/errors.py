"""Errors that are the user's to fix.

A :class:`UserError` is printed as one line (no traceback unless ``--log-level debug``)
and the CLI exits with code 2. Library code raises it for bad input: a missing file,
a bad value, an unknown config key. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: one clear line naming the file, key or value."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(UserError):
    """A configuration file or value does not satisfy the schema."""
