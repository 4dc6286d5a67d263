"""``dlpipe slices``: slices of a tiled volume as PNG images for a CVAT task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load, run_stage
from dlpipe.cli._options import comma_list, out_option, overwrite_option
from dlpipe.errors import UserError


def _indices(text: str | None) -> list[int] | None:
    """``"12,24, 40"`` -> [12, 24, 40]."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--at {text!r}: expected comma-separated slice indices") from None


@app.command()
def slices(
    volume: Annotated[Path, typer.Argument(help="VOL.zarr of `dlpipe tile`.")],
    out: Annotated[Path, out_option("Task folder to write (images, slices.json).")],
    axis: Annotated[
        list[str] | None,
        typer.Option(
            help="Axis of the slices: z, y or x; repeat (or z,y,x) for several.",
            metavar="z|y|x",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Comma-separated slice indices, on every axis.", metavar="I,J,..."),
    ] = None,
    count: Annotated[
        int | None, typer.Option(help="N evenly spaced slices per axis (instead of --at).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label volume (PRED.zarr) whose slices become annotations.zip, a CVAT for "
            "images 1.1 export of masks (one per connected region) for 'Upload annotations'.",
            metavar="PATH",
        ),
    ] = None,
    labels_name: Annotated[
        str, typer.Option(help="Label image of --labels (labels/<name>/0).")
    ] = "phases",
    classes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated class names by label value, 0 first (default: "
            "those stored with --labels).",
            metavar="A,B",
        ),
    ] = None,
    suggest: Annotated[
        Path | None,
        typer.Option(
            help="PRED.zarr of `dlpipe predict`: write its --count most uncertain slices not "
            "annotated yet (which slices to annotate next).",
            metavar="PATH",
        ),
    ] = None,
    min_gap: Annotated[
        int, typer.Option(help="With --suggest: smallest distance between suggested slices.")
    ] = 4,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Write slices of a volume as 8-bit PNGs for a CVAT task, and a manifest slices.json.

    Images are windowed by the volume's p0.1-p99.9 statistics and named
    <stem>_z0012.png, <stem>_y0080.png, <stem>_x0100.png; `dlpipe cvat EXPORT --volume
    VOL.zarr` puts their annotations back at those slices. Only the slices are read.

    Which slices to annotate next: --suggest PRED.zarr --count N picks the N slices (of
    --axis) whose prediction is the most uncertain (dlpipe predict records the mean
    1 - margin of every slice), not annotated yet, at least --min-gap slices apart.
    """
    from dlpipe.annotations.slices import export_slices  # deferred: `--help` stays fast

    config = load()
    run_stage(
        config,
        "slices",
        lambda run: export_slices(
            volume,
            out,
            axes=axis or ["z"],
            at=_indices(at),
            count=count,
            labels=labels,
            labels_name=labels_name,
            classes=comma_list(classes),
            overwrite=overwrite,
            suggest=suggest,
            min_gap=min_gap,
        ),
        dataset=volume,
        kind="data",
        params={
            "axes": axis or ["z"],
            "at": at,
            "count": count,
            "labels": str(labels or ""),
            "suggest": str(suggest or ""),
            "min_gap": min_gap,
        },
    )
