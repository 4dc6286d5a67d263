"""``dlpipe cvat``: CVAT annotations to U-Net masks and Mask R-CNN targets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load
from dlpipe.errors import UserError


def _metric(name: str) -> str:
    """An MLflow-safe metric name (labels may hold any character)."""
    return re.sub(r"[^\w\-. /]", "_", name)


@app.command()
def cvat(
    annotations: Annotated[
        Path, typer.Argument(help="CVAT 'for images/video 1.1' annotations.xml or export .zip.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Zarr group to write (OUT.zarr); optional with --volume."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the images, or the video file of a video export "
            "(optional when the zip holds them)."
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(help="Comma-separated class names, in order [config: cvat.classes]."),
    ] = None,
    lenient: Annotated[
        bool | None, typer.Option("--lenient", help="Pad short mask RLEs [config: cvat.lenient].")
    ] = None,
    skip_missing: Annotated[
        bool | None,
        typer.Option("--skip-missing", help="Skip missing images [config: cvat.skip_missing]."),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Write masks only [config: cvat.read_images].")
    ] = False,
    volume: Annotated[
        Path | None,
        typer.Option(
            help="VOL.zarr the images are slices of: write the masks into "
            "VOL.zarr/labels/annotations (255 = not annotated) at the slices the image names "
            "(<stem>_z0012.png, slice_0012.png) or the manifest give."
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="slices.json of `dlpipe slices` (default: the one beside EXPORT)."),
    ] = None,
    empty: Annotated[
        str,
        typer.Option(
            help="With --volume, an image without shapes is 'skip' (not annotated) or "
            "'background' (annotated, all background); 'auto': background when the manifest "
            "says the images went out with predicted labels (slices --labels), else skip."
        ),
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace OUT (or the annotations) if it exists.")
    ] = False,
) -> None:
    """Convert a CVAT export to a Zarr dataset: images, semantic (uint8), instances (uint32).

    Also writes OUT/objects.parquet (one row per object and tag; CSV with cvat.table)
    and the attributes `classes` (classes[0] == "background") and `image_names`. Pixel
    (i, j) belongs to a shape when its centre (x=j+0.5, y=i+0.5) is inside. Nothing is
    written unless the whole conversion succeeds.

    With --volume VOL.zarr the masks go back into the volume they were sliced from
    (`dlpipe slices`), on any axis, and --out is optional.
    """
    from dlpipe.annotations import convert
    from dlpipe.annotations.placement import place_annotations
    from dlpipe.config import validate_config
    from dlpipe.tracking import stage_run

    config = load()
    section = config["cvat"]
    if classes is not None:
        section["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    if lenient:
        section["lenient"] = True
    if skip_missing:
        section["skip_missing"] = True
    if no_images:
        section["read_images"] = False
    config = validate_config(config, source="command line")
    params = config["cvat"]
    if out is None and volume is None:
        raise UserError("give --out OUT.zarr, --volume VOL.zarr or both")
    with stage_run(config, "cvat", dataset=annotations.stem, params=params) as run:
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
            per_axis = ", ".join(f"{a} {v}" for a, v in placed["slices"].items())
            run.log_metrics({"placed_slices": placed["images"]})
            typer.echo(f"placed {placed['images']} slices ({per_axis}): {placed['labels']}")
        if out is None:
            return
        summary = convert(annotations, out, images=images, params=params, overwrite=overwrite)
        run.log_metrics(
            {"images": summary["images"], "seconds": summary["seconds"]}
            | {_metric(f"objects_{k}"): v for k, v in summary["objects_per_label"].items()}
            | summary["counts"]
        )
        run.log_dict(summary, "cvat_summary.json")
