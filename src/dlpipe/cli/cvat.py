"""``dlpipe cvat``: CVAT annotations to U-Net masks and Mask R-CNN targets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


def _metric(name: str) -> str:
    """An MLflow-safe metric name (labels may hold any character)."""
    return re.sub(r"[^\w\-. /]", "_", name)


@app.command()
def cvat(
    annotations: Annotated[
        Path, typer.Argument(help="CVAT 'for images/video 1.1' annotations.xml or export .zip.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Zarr group to write (OUT.zarr).")],
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
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Convert a CVAT export to a Zarr dataset: images, semantic (uint8), instances (uint32).

    Also writes OUT/objects.parquet (one row per object and tag; CSV with cvat.table)
    and the attributes `classes` (classes[0] == "background") and `image_names`. Pixel
    (i, j) belongs to a shape when its centre (x=j+0.5, y=i+0.5) is inside. Nothing is
    written unless the whole conversion succeeds.
    """
    from dlpipe.annotations import convert
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
    with stage_run(config, "cvat", dataset=annotations.stem, params=params) as run:
        summary = convert(annotations, out, images=images, params=params, overwrite=overwrite)
        run.log_metrics(
            {"images": summary["images"], "seconds": summary["seconds"]}
            | {_metric(f"objects_{k}"): v for k, v in summary["objects_per_label"].items()}
            | summary["counts"]
        )
        run.log_dict(summary, "cvat_summary.json")
