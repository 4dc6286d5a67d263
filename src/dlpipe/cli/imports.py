"""``dlpipe import``: instance datasets (COCO, DSB2018 folders) to a dataset Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load, run_stage
from dlpipe.cli._options import comma_list, out_option, overwrite_option

import_app = typer.Typer(
    help="Import instance annotations into a dataset Zarr (the layout of `dlpipe cvat`): "
    "OUT/images, OUT/semantic (uint8), OUT/instances (uint32) and the objects table.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


@import_app.command("coco")
def coco(
    annotations: Annotated[Path, typer.Argument(help="COCO instances JSON.")],
    out: Annotated[Path, out_option("Dataset Zarr to write.")],
    images: Annotated[
        Path, typer.Option(help="Folder of the JSON's images (file_name).", metavar="PATH")
    ],
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """COCO polygons / RLE to images, semantic (uint8) and instances (uint32) in OUT.

    Classes are the categories by id (class 0 is background); crowd objects are skipped.
    Images of different sizes are padded (attribute image_sizes keeps the originals).
    """
    from dlpipe.annotations import read_coco  # stage imports are deferred: `--help` stays fast

    config = load()
    run_stage(
        config,
        "import",
        lambda run: read_coco(annotations, images, out, overwrite=overwrite),
        dataset=out,
        kind="data",
        params={"format": "coco"},
    )


@import_app.command("dsb2018")
def dsb2018(
    root: Annotated[
        Path, typer.Argument(help="Folder of <id>/images/<id>.png + <id>/masks/*.png samples.")
    ],
    out: Annotated[Path, out_option("Dataset Zarr to write.")],
    ids: Annotated[
        str | None,
        typer.Option(help="Comma-separated sample ids to take, in order (all).", metavar="A,B"),
    ] = None,
    class_name: Annotated[str, typer.Option(help="Name of the object class.")] = "nucleus",
    rgb: Annotated[
        bool, typer.Option("--rgb", help="Store RGB even if every image is grey.")
    ] = False,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """One mask PNG per object (the DSB2018 layout) to images, semantic and instances in OUT.

    Images of different sizes are padded (attribute image_sizes keeps the originals).
    """
    from dlpipe.annotations import read_instance_folders  # deferred: `--help` stays fast

    config = load()
    chosen = comma_list(ids) or None
    run_stage(
        config,
        "import",
        lambda run: read_instance_folders(
            root, out, ids=chosen, class_name=class_name, rgb=rgb, overwrite=overwrite
        ),
        dataset=out,
        kind="data",
        params={"format": "dsb2018"},
    )
