"""The ``cvat`` stage: a CVAT export into a dataset Zarr, into the volume it was sliced from,
or both."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.annotations.cvat.convert import convert
from dlpipe.annotations.placement import place_annotations
from dlpipe.errors import UserError
from dlpipe.results import StageResult

__all__ = ["cvat_stage"]


def cvat_stage(
    annotations: str | Path,
    *,
    out: str | Path | None,
    volume: str | Path | None,
    params: Mapping[str, Any],
    images: str | Path | None = None,
    manifest: str | Path | None = None,
    empty: str = "auto",
    overwrite: bool = False,
) -> StageResult:
    """Place the export's masks into ``volume`` and/or convert it to the dataset ``out``.

    Parameters
    ----------
    annotations : CVAT ``annotations.xml`` or the export zip
    out : dataset Zarr to write (:func:`~dlpipe.annotations.cvat.convert.convert`), or None
    volume : ``VOL.zarr`` the images are slices of
        (:func:`~dlpipe.annotations.placement.place_annotations`), or None
    params : the ``cvat`` config section
    images, manifest, empty, overwrite : see the two functions

    Returns
    -------
    StageResult
        The conversion's summary (when ``out``) with ``placed`` (when ``volume``), what to
        log, and one line per output.

    Raises
    ------
    UserError
        Neither ``out`` nor ``volume``, or bad input to either step.
    """
    if out is None and volume is None:
        raise UserError("give --out OUT.zarr, --volume VOL.zarr or both")
    lines: list[str] = []
    metrics: dict[str, float] = {}
    placed = None
    if volume is not None:
        placed = place_annotations(
            annotations,
            volume,
            manifest=manifest,
            classes=params["classes"] or None,
            empty=empty,
            lenient=bool(params["lenient"]),
            overwrite=overwrite,
        )
        per_axis = ", ".join(f"{a} {len(v)}" for a, v in placed["slices"].items())
        metrics["placed_slices"] = placed["images"]
        lines.append(f"placed {placed['images']} slices ({per_axis}): {placed['labels']}")
    if out is None:
        return StageResult({"placed": placed}, metrics=metrics, summary="\n".join(lines))
    result = convert(annotations, out, images=images, params=params, overwrite=overwrite)
    if placed is not None:
        result["placed"] = placed
    result.metrics.update(metrics)
    lines.append(result.summary)
    result.summary = "\n".join(lines)
    return result
