"""``dlpipe cvat``: CVAT annotations to U-Net masks and Mask R-CNN targets, or back into the
volume they were sliced from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import comma_list, config_option, overwrite_option


@app.command()
def cvat(
    annotations: Annotated[
        Path, typer.Argument(help="CVAT 'for images/video 1.1' annotations.xml or export .zip.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Zarr dataset to write (OUT.zarr); optional with --volume.",
            metavar="PATH",
        ),
    ] = None,
    volume: Annotated[
        Path | None,
        typer.Option(
            help="VOL.zarr the images are slices of: write the masks into "
            "VOL.zarr/labels/annotations (255 = not annotated) at the slices the image names "
            "(<stem>_z0012.png, slice_0012.png) or the manifest give.",
            metavar="PATH",
        ),
    ] = None,
    overwrite: Annotated[
        bool, overwrite_option("Replace OUT (or the volume's annotations) if it exists.")
    ] = False,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the images, or the video file of a video export "
            "(optional when the zip holds them).",
            metavar="PATH",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="slices.json of `dlpipe slices` (default: the one beside EXPORT).",
            metavar="PATH",
        ),
    ] = None,
    empty: Annotated[
        str,
        typer.Option(
            help="With --volume, an image without shapes is 'skip' (not annotated) or "
            "'background' (annotated, all background); 'auto': background when the manifest "
            "says the images went out with predicted labels (slices --labels), else skip.",
            metavar="auto|skip|background",
        ),
    ] = "auto",
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

    With --volume VOL.zarr the masks go back into the volume they were sliced from
    (`dlpipe slices`), on any axis, as VOL.zarr/labels/annotations; --out is then optional.
    """
    from dlpipe.annotations.cvat.stage import cvat_stage  # deferred: `--help` stays fast

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
        lambda run: cvat_stage(
            annotations,
            out=out,
            volume=volume,
            params=params,
            images=images,
            manifest=manifest,
            empty=empty,
            overwrite=overwrite,
        ),
        dataset=out or volume or annotations,
        kind="data",
        params=params,
    )
