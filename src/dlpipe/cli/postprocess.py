"""``dlpipe postprocess``: connected components across chunks, blob table, clean-up rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def postprocess(
    pred: Annotated[Path, typer.Argument(help="Label volume: Zarr array, OME-Zarr or TIFF.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Cleaned OME-Zarr (labels/<name>/0).")],
    blobs: Annotated[
        Path | None, typer.Option(help="Blob table CSV (default OUT stem + .blobs.csv).")
    ] = None,
    changes: Annotated[
        Path | None, typer.Option(help="Change table CSV (default OUT stem + .changes.csv).")
    ] = None,
    connectivity: Annotated[
        int | None, typer.Option(help="6, 18 or 26 [config: postprocess.connectivity].")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Connected components of every phase across chunks, a blob table, and per-phase rules.

    Rules (config postprocess.rules): size, elongation and area limits, ring artefacts,
    hole filling, opening and closing. Writes the cleaned volume, the blob table and a table
    of every change; OUT/.dlpipe_complete is written last.
    """
    from dlpipe.config import validate_config
    from dlpipe.postprocess import postprocess as run_postprocess
    from dlpipe.tracking import stage_run

    config = load()
    if connectivity is not None:
        config["postprocess"]["connectivity"] = connectivity
    config = validate_config(config, source="command line")
    params = config["postprocess"]
    with stage_run(config, "postprocess", dataset=str(pred), params=params) as run:
        summary = run_postprocess(
            pred, out, params, blobs_csv=blobs, changes_csv=changes, overwrite=overwrite
        )
        run.log_metrics(
            {f"blobs_{k}": v for k, v in summary["blobs"].items()}
            | {f"changed_voxels_{k}": v for k, v in summary["changed_voxels"].items()}
            | {f"fraction_after_{k}": v for k, v in summary["fraction_after"].items()}
        )
        run.log_artifact(summary["blobs_csv"])
        run.log_artifact(summary["changes_csv"])
