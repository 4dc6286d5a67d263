"""MLflow runs through :class:`mlflow.MlflowClient` (no global fluent state).

The store they go to (URI, server check, creation) is :mod:`dlpipe.tracking.store`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dlpipe.config import config_hash
from dlpipe.results import StageResult
from dlpipe.tracking.names import run_name
from dlpipe.tracking.store import _client, _retry, check_tracking, init_store, tracking_uri

__all__ = [
    "PARENT_ENV",
    "VOCABULARY",
    "StageRun",
    "end_parent_run",
    "parent_run",
    "stage_run",
    "start_parent_run",
    "ui_hint",
    "where_runs_go",
]

PARENT_ENV = "DLPIPE_PARENT_RUN_ID"
"""Environment variable that carries the workflow's parent run id to every job."""

VOCABULARY = ("stage", "dataset", "model", "kind")
"""The tags every stage run carries (:mod:`dlpipe.tracking.names`)."""


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


UI_VIEW = "workflowType=machine_learning"
"""URL query that opens the MLflow 3.17 UI on model training: its GenAI / Model training switch
follows the URL (else the browser's last choice, GenAI at first) and ignores the experiment's
``mlflow.experimentKind`` tag."""


def ui_hint(config: Mapping[str, Any], experiment_id: str | None) -> str:
    """One line saying how to look at the runs in the MLflow UI, opened on model training.

    A server URI gives the page's address; a SQLite store the ``mlflow ui`` command and the
    address it serves (http://127.0.0.1:5000). "" when tracking is off.
    """
    if not config["tracking"]["enabled"]:
        return ""
    uri = tracking_uri(config)
    page = f"#/experiments/{experiment_id}/runs?{UI_VIEW}" if experiment_id else f"#/?{UI_VIEW}"
    if uri.startswith(("http://", "https://")):
        return f"MLflow UI: {uri.rstrip('/')}/{page}"
    return f"MLflow UI: mlflow ui --backend-store-uri {uri}, then http://127.0.0.1:5000/{page}"


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

    def experiment_id(self) -> str | None:
        """The id of the run's experiment (None when inactive or unknown)."""
        if not self.active:
            return None
        try:
            return str(self.client.get_run(self.run_id).info.experiment_id)
        except Exception:  # only for a hint line
            return None

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
