"""MLflow runs through :class:`mlflow.MlflowClient` (no global fluent state)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dlpipe.config import config_hash
from dlpipe.errors import UserError
from dlpipe.results import StageResult
from dlpipe.tracking.names import run_name

log = logging.getLogger(__name__)

PARENT_ENV = "DLPIPE_PARENT_RUN_ID"
"""Environment variable that carries the workflow's parent run id to every job."""

VOCABULARY = ("stage", "dataset", "model", "kind")
"""The tags every stage run carries (:mod:`dlpipe.tracking.names`)."""

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""Experiment tag that makes the MLflow 3 UI open on runs (model training), not GenAI traces."""

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


def where_runs_go(config: Mapping[str, Any], name: str = "") -> str:
    """One line saying where this command's MLflow run goes ("" when tracking is off).

    Printed first by every command, so that a single command run outside the workflow says
    which store it writes (a SQLite file under ``results`` unless a URI is set).
    """
    if not config["tracking"]["enabled"]:
        return ""
    parent = os.environ.get(PARENT_ENV)
    return (
        f"MLflow: run {name!r} goes to {tracking_uri(config)}, experiment "
        f"{config['tracking']['experiment']!r}"
        + (f", parent run {parent}" if parent else "")
        + " (tracking.enabled: false turns it off)"
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class StageRun:
    """One MLflow run. With tracking disabled every method does nothing.

    Parameters
    ----------
    client : MlflowClient or None
    run_id : str or None
    """

    def __init__(self, client: Any | None = None, run_id: str | None = None) -> None:
        self.client = client
        self.run_id = run_id

    @property
    def active(self) -> bool:
        return self.client is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active or not params:
            return
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in _flatten(params).items()]
        for i in range(0, len(items), 100):
            _retry(lambda b=items[i : i + 100]: self.client.log_batch(self.run_id, params=b))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.active or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), float(v), now, step or 0) for k, v in _flatten(metrics).items()]
        for i in range(0, len(items), 500):
            _retry(lambda b=items[i : i + 500]: self.client.log_batch(self.run_id, metrics=b))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        _retry(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        _retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        """Log every file of ``folder`` (for example a model: weights plus card)."""
        if not self.active:
            return
        _retry(lambda: self.client.log_artifacts(self.run_id, str(folder), artifact_path))

    def log_dict(self, data: Any, artifact_file: str) -> None:
        if not self.active:
            return
        _retry(lambda: self.client.log_dict(self.run_id, data, artifact_file))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        if not self.active:
            return
        _retry(lambda: self.client.log_figure(self.run_id, figure, artifact_file))

    def log_result(self, result: StageResult) -> None:
        """Log what a stage's :class:`~dlpipe.results.StageResult` asks for.

        Tags, params, metrics, then the artifact files and the JSON artifacts. The tags of
        the run's vocabulary (:data:`VOCABULARY`) were set when the run started and stay.
        """
        self.set_tags({k: v for k, v in result.tags.items() if k not in VOCABULARY})
        self.log_params(result.params)
        self.log_metrics(result.metrics)
        for artifact in result.artifacts:
            path, folder = artifact if isinstance(artifact, tuple) else (artifact, None)
            self.log_artifact(path, folder)
        for name, data in result.dicts.items():
            self.log_dict(data, name)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _create_run(
    config: Mapping[str, Any], name: str, tags: Mapping[str, str], parent: str | None
) -> StageRun:
    if not check_tracking(config):
        return StageRun()
    experiment_id = init_store(config)
    client = _client(tracking_uri(config))
    all_tags = {
        "mlflow.runName": name,
        "git_commit": _git_commit(),
        "config_hash": config_hash(dict(config)),
        **tags,
    }
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = _retry(lambda: client.create_run(experiment_id, tags=all_tags, run_name=name))
    return StageRun(client, run.info.run_id)


def parent_run(config: Mapping[str, Any]) -> StageRun:
    """The workflow's parent run of this job (``$DLPIPE_PARENT_RUN_ID``); inactive when none.

    The summary stage logs its best score, table and plots there too, so that the parent
    run shows what the invocation found.
    """
    run_id = os.environ.get(PARENT_ENV)
    if not config["tracking"]["enabled"] or not run_id:
        return StageRun()
    return StageRun(_client(tracking_uri(config)), run_id)


def start_parent_run(config: Mapping[str, Any], name: str = "workflow") -> str | None:
    """Start the workflow's parent run; return its id (None when tracking is off).

    The caller exports the id as ``DLPIPE_PARENT_RUN_ID`` so that each job's
    stage run becomes its child.
    """
    if not config["tracking"]["enabled"]:
        return None
    return _create_run(config, name, {"stage": "workflow"}, None).run_id


def end_parent_run(config: Mapping[str, Any], run_id: str | None, status: str = "FINISHED") -> None:
    """Close the parent run with ``status`` (FINISHED or FAILED)."""
    if not config["tracking"]["enabled"] or not run_id:
        return
    client = _client(tracking_uri(config))
    _retry(lambda: client.set_terminated(run_id, status))


@contextlib.contextmanager
def stage_run(
    config: Mapping[str, Any],
    stage: str,
    *,
    dataset: str = "",
    model: str = "",
    kind: str = "",
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Iterator[StageRun]:
    """A child run for one stage, named ``<stage> <dataset>/<model>``.

    Tagged with ``stage``, ``dataset``, ``model`` and ``kind`` (see
    :mod:`dlpipe.tracking.names`), ``tags``, the git commit and the config hash. The parent
    is ``$DLPIPE_PARENT_RUN_ID`` when set (a workflow invocation); without it the run stands
    alone. The run is marked FAILED if the block raises.
    """
    if not config["tracking"]["enabled"]:
        yield StageRun()
        return
    all_tags = dict(zip(VOCABULARY, (stage, dataset, model, kind), strict=True))
    all_tags = {k: v for k, v in all_tags.items() if v} | dict(tags or {})
    title = name or run_name(stage, dataset, model)
    run = _create_run(config, title, all_tags, os.environ.get(PARENT_ENV) or None)
    if not run.active:  # an unreachable server with tracking.required: false
        yield run
        return
    run.log_params(params or {})
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        _retry(lambda: run.client.set_terminated(run.run_id, status))
