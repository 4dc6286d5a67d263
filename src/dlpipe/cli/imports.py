"""``dlpipe import``: instance datasets (COCO, DSB2018 folders) to a dataset Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load

import_app = typer.Typer(
    help="Import instance annotations into a dataset Zarr (the layout of `dlpipe cvat`).",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


def _log(run, summary: dict) -> None:
    run.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
    run.log_dict(summary, "import_summary.json")


@import_app.command("coco")
def coco(
    annotations: Annotated[Path, typer.Argument(help="COCO instances JSON.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset Zarr to write.")],
    images: Annotated[Path, typer.Option(help="Folder of the JSON's images (file_name).")],
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """COCO polygons / RLE to images, semantic (uint8) and instances (uint32) in OUT.

    Classes are the categories by id (class 0 is background); crowd objects are skipped.
    Images of different sizes are padded (attribute image_sizes keeps the originals).
    """
    from dlpipe.annotations import read_coco
    from dlpipe.tracking import stage_run

    config = load()
    with stage_run(config, "import", dataset=annotations.stem, params={"format": "coco"}) as run:
        summary = read_coco(annotations, images, out, overwrite=overwrite)
        _log(run, summary)
    typer.echo(f"imported {summary['images']} images, {summary['objects']} objects: {out}")


@import_app.command("dsb2018")
def dsb2018(
    root: Annotated[
        Path, typer.Argument(help="Folder of <id>/images/<id>.png + <id>/masks/*.png samples.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset Zarr to write.")],
    ids: Annotated[
        str | None, typer.Option(help="Comma-separated sample ids to take, in order (all).")
    ] = None,
    class_name: Annotated[str, typer.Option(help="Name of the object class.")] = "nucleus",
    rgb: Annotated[
        bool, typer.Option("--rgb", help="Store RGB even if every image is grey.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """One mask PNG per object (the DSB2018 layout) to images, semantic and instances in OUT.

    Images of different sizes are padded (attribute image_sizes keeps the originals).
    """
    from dlpipe.annotations import read_instance_folders
    from dlpipe.tracking import stage_run

    config = load()
    chosen = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    with stage_run(config, "import", dataset=root.name, params={"format": "dsb2018"}) as run:
        summary = read_instance_folders(
            root, out, ids=chosen, class_name=class_name, rgb=rgb, overwrite=overwrite
        )
        _log(run, summary)
    typer.echo(f"imported {summary['images']} images, {summary['objects']} objects: {out}")
