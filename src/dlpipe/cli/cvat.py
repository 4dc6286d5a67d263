"""``dlpipe cvat``: CVAT annotations to U-Net masks and Mask R-CNN targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import comma_list, config_option, out_option, overwrite_option


@app.command()
def cvat(
    annotations: Annotated[
        Path, typer.Argument(help="CVAT 'for images/video 1.1' annotations.xml or export .zip.")
    ],
    out: Annotated[Path, out_option("Zarr group to write (OUT.zarr).")],
    overwrite: Annotated[bool, overwrite_option()] = False,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the images, or the video file of a video export "
            "(optional when the zip holds them).",
            metavar="PATH",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        config_option("Comma-separated class names, in order", "cvat.classes", metavar="A,B"),
    ] = None,
    lenient: Annotated[
        bool | None, config_option("Pad short mask RLEs", "cvat.lenient", "--lenient")
    ] = None,
    skip_missing: Annotated[
        bool | None, config_option("Skip missing images", "cvat.skip_missing", "--skip-missing")
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Write masks only [config: cvat.read_images].")
    ] = False,
) -> None:
    """Convert a CVAT export to a Zarr dataset: images, semantic (uint8), instances (uint32).

    Also writes OUT/objects.parquet (one row per object and tag; CSV with cvat.table)
    and the attributes `classes` (classes[0] == "background") and `image_names`. Pixel
    (i, j) belongs to a shape when its centre (x=j+0.5, y=i+0.5) is inside. Nothing is
    written unless the whole conversion succeeds.
    """
    from dlpipe.annotations import convert  # stage imports are deferred: `--help` stays fast

    options = {
        "classes": comma_list(classes),
        "lenient": lenient or None,
        "skip_missing": skip_missing or None,
        "read_images": False if no_images else None,
    }
    config = configure("cvat", options)
    params = config["cvat"]
    run_stage(
        config,
        "cvat",
        lambda run: convert(annotations, out, images=images, params=params, overwrite=overwrite),
        dataset=annotations.stem,
        params=params,
    )
