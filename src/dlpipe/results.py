"""What a stage returns: its summary mapping, plus what tracking should log and print.

Every stage's library entry point (``make_demo``, ``tile_volume``, ``convert``,
``predict_volume``, ``evaluate``, ...) returns a :class:`StageResult`. It *is* the
summary dict the stage always returned (so callers index it as before); its attributes
say what the stage wants logged, and :meth:`dlpipe.tracking.StageRun.log_result` logs
exactly that. The CLI only prints :attr:`StageResult.summary`.

This module imports nothing of dlpipe, so that every stage can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["StageResult", "score"]


def score(value: Any) -> str:
    """A score for a result line: 3 digits, ``n/a`` for a missing or NaN one.

    >>> score(0.7586957206546844), score(float("nan")), score(None), score(1)
    ('0.759', 'n/a', 'n/a', '1.000')
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if value != value else f"{value:.3f}"


class StageResult(dict[str, Any]):
    """A stage's summary mapping, with what to log and the line to print.

    Parameters
    ----------
    data : mapping, optional
        The stage's summary (the dict itself).
    metrics : mapping, optional
        Metric name -> number, logged once (nested mappings are flattened with ``.``).
    params : mapping, optional
        Extra parameters to log (the stage's config section is logged when its run starts).
    tags : mapping, optional
        Run tags, e.g. the shape of a tiled volume.
    artifacts : list, optional
        Files to log: a path (at the artifact root) or a ``(path, folder)`` pair.
    dicts : mapping, optional
        Artifact file name -> JSON-able data (``tile_summary.json``).
    summary : str, optional
        One line for the user (``""``: the command prints nothing).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        artifacts: list[Path | tuple[Path, str]] | None = None,
        dicts: Mapping[str, Any] | None = None,
        summary: str = "",
    ) -> None:
        super().__init__(data or {})
        self.metrics: dict[str, Any] = dict(metrics or {})
        self.params: dict[str, Any] = dict(params or {})
        self.tags: dict[str, Any] = dict(tags or {})
        self.artifacts: list[Path | tuple[Path, str]] = list(artifacts or [])
        self.dicts: dict[str, Any] = dict(dicts or {})
        self.summary = summary

    def __repr__(self) -> str:
        return f"StageResult({dict.__repr__(self)}, summary={self.summary!r})"
