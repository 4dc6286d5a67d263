"""The MLflow tracking store: its URI, the check of a server, its creation under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dlpipe.errors import UserError

__all__ = [
    "EXPERIMENT_KIND",
    "SCHEMES",
    "SERVER_TIMEOUT_S",
    "check_tracking",
    "init_store",
    "tracking_uri",
]

log = logging.getLogger(__name__)

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""Experiment tag marking the experiment as model training. MLflow 3.17's UI ignores it (its
GenAI / Model training switch follows the URL's ``workflowType``, else the browser's last choice,
GenAI at first): :func:`dlpipe.tracking.runs.ui_hint` gives the address that opens on runs."""

T = TypeVar("T")


def tracking_uri(config: Mapping[str, Any]) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI``, else ``tracking.uri``, else SQLite in results."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    uri = config["tracking"].get("uri")
    if uri:
        return str(uri)
    db = Path(config["results"]).resolve() / "mlflow.db"
    return f"sqlite:///{db}"


def _artifact_root(config: Mapping[str, Any]) -> str | None:
    if os.environ.get("MLFLOW_TRACKING_URI") or config["tracking"].get("uri"):
        return None  # a server decides where artifacts go
    return (Path(config["results"]).resolve() / "mlartifacts").as_uri()


SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
"""Tracking URI schemes MLflow can store runs in."""

SERVER_TIMEOUT_S = 5.0
"""How long the check of a tracking server waits for it to answer."""


def _client(uri: str):  # -> mlflow.MlflowClient (imported lazily: mlflow is slow to import)
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _unreachable(uri: str, timeout: float = SERVER_TIMEOUT_S) -> str | None:
    """Why the tracking server of ``uri`` cannot be used, or None (also for non-servers).

    An ``http(s)`` URI is checked once with a TCP connection to its host and port.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return f"tracking server unreachable ({exc.__class__.__name__}: {exc})"


def check_tracking(config: Mapping[str, Any]) -> bool:
    """Check the tracking URI once, at the start of a command; return whether to track.

    Returns False when tracking is disabled, or when a tracking server does not answer
    within :data:`SERVER_TIMEOUT_S` and ``tracking.required`` is false (a warning says so).

    Raises
    ------
    UserError
        A URI whose scheme MLflow cannot use (naming it), or a server that does not
        answer while ``tracking.required`` is true (the default).
    """
    if not config["tracking"]["enabled"]:
        return False
    uri = tracking_uri(config)
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme not in SCHEMES:
        raise UserError(
            f"tracking URI scheme {scheme!r} is not one of "
            f"{', '.join(s for s in SCHEMES if s)} (MLFLOW_TRACKING_URI or tracking.uri)",
            path=uri,
        )
    why = _unreachable(uri)
    if why is None:
        return True
    if config["tracking"].get("required", True):
        raise UserError(
            f"{why}; start it, or set tracking.required: false to run untracked", path=uri
        )
    log.warning("%s: %s; running untracked (tracking.required: false)", uri, why)
    return False


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An inter-process lock on a SQLite store (``<db>.lock`` beside it); no-op otherwise.

    Held while the store and the experiment are created: MLflow's first use of a new
    SQLite file runs its schema migrations, which break when several processes run them
    at once (``table _alembic_tmp_... already exists``).
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Call ``fn``; retry with jittered back-off while SQLite says it is locked or busy."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:
            text = str(exc).lower()
            transient = "locked" in text or "busy" in text or "unique constraint" in text
            if not transient or i == attempts - 1:
                raise
            time.sleep(0.05 * 2**i * (1 + random.random()))
    raise AssertionError("unreachable")


def _drop_alembic_scratch(uri: str) -> list[str]:
    """Drop the scratch tables a migration broken by parallel first use left in a SQLite store.

    MLflow's migrations copy a table into ``_alembic_tmp_<name>``, drop ``<name>`` and
    rename the copy; a race leaves the copy, and every later use fails with
    ``table _alembic_tmp_<name> already exists``. A copy is dropped only while ``<name>``
    still exists (else it holds the data). Returns the tables dropped.
    """
    if not uri.startswith("sqlite:///"):
        return []
    con = sqlite3.connect(uri.removeprefix("sqlite:///"))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        scratch = [t for t in tables if t.startswith("_alembic_tmp_")]
        dropped = [t for t in scratch if t.removeprefix("_alembic_tmp_") in tables]
        for t in dropped:
            con.execute(f'DROP TABLE "{t}"')
        con.commit()
    finally:
        con.close()
    if dropped:
        log.warning("tracking store: dropped %s left by a broken migration", ", ".join(dropped))
    return dropped


def init_store(config: Mapping[str, Any]) -> str | None:
    """Create the tracking store and the experiment if needed; return the experiment id.

    Safe in parallel: a SQLite store is created under an inter-process file lock
    (:func:`_store_lock`), with retries while it is busy. Returns None when tracking is
    disabled.
    """
    if not config["tracking"]["enabled"]:
        return None
    uri = tracking_uri(config)
    name = config["tracking"]["experiment"]

    def get_or_create() -> str:
        client = _client(uri)  # a new client: its first use creates the store's tables
        exp = client.get_experiment_by_name(name)
        if exp is None:
            key, value = EXPERIMENT_KIND
            return client.create_experiment(
                name, artifact_location=_artifact_root(config), tags={key: value}
            )
        if EXPERIMENT_KIND[0] not in exp.tags:  # a store made by an older dlpipe
            client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id

    with _store_lock(uri):
        try:
            return _retry(get_or_create)
        except Exception as exc:
            if "_alembic_tmp_" not in str(exc) or not _drop_alembic_scratch(uri):
                raise
            return _retry(get_or_create)  # a store broken by an older dlpipe, repaired
