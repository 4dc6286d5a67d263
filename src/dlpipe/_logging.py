"""Logging set-up shared by the CLI and the Snakemake rules (logs people can read)."""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str = "info") -> None:
    """Log to stderr as ``time level name: message``, one line per record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING unless we debug.
    noisy = ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "distributed", "numcodecs")
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
