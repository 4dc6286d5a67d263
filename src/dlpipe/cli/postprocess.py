"""``dlpipe postprocess``: connected components across chunks, blob table, clean-up rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, link_tags, run_stage
from dlpipe.cli._options import config_option, out_option, overwrite_option
from dlpipe.tracking import lineage


@app.command()
def postprocess(
    pred: Annotated[Path, typer.Argument(help="Label volume: Zarr array, OME-Zarr or TIFF.")],
    out: Annotated[Path, out_option("Cleaned OME-Zarr (labels/<name>/0).")],
    blobs: Annotated[
        Path | None,
        typer.Option(help="Blob table CSV (default OUT stem + .blobs.csv).", metavar="PATH"),
    ] = None,
    changes: Annotated[
        Path | None,
        typer.Option(help="Change table CSV (default OUT stem + .changes.csv).", metavar="PATH"),
    ] = None,
    connectivity: Annotated[
        int | None, config_option("6, 18 or 26", "postprocess.connectivity")
    ] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Connected components of every phase across chunks, a blob table, and per-phase rules.

    Rules (config postprocess.rules): size, elongation and area limits, ring artefacts,
    hole filling, opening and closing. Writes OUT (OME-Zarr: labels/<name>/0, 1, ... with the
    input's pyramid, class names and units), the blob table (--blobs) and the table of every
    change (--changes); OUT's completion marker is written last. Ends with one line: blobs
    changed, voxels changed and OUT.
    """
    from dlpipe.postprocess import postprocess as clean  # deferred: `--help` stays fast

    config = configure("postprocess", {"connectivity": connectivity})
    source = lineage(pred)
    params = config["postprocess"]
    run_stage(
        config,
        "postprocess",
        lambda run: clean(
            pred, out, params, blobs_csv=blobs, changes_csv=changes, overwrite=overwrite
        ),
        dataset=source.get("volume", pred),
        model=source.get("model", ""),
        kind=source.get("kind", ""),
        params=params,
        tags=link_tags(source),
    )
