"""``dlpipe baseline``: multi-Otsu and random-forest segmentations, evaluated like a network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load
from dlpipe.cli.evaluate import AllZ, ZRange


@app.command()
def baseline(
    volume: Annotated[Path, typer.Argument(help="Grey volume: TIFF, Zarr array or OME-Zarr.")],
    truth: Annotated[Path, typer.Argument(help="Labels (training slices and the truth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Predicted OME-Zarr to write.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON of the evaluation.")],
    method: Annotated[
        str | None, typer.Option(help="otsu or rf [config: baselines.method].")
    ] = None,
    slices: Annotated[str | None, typer.Option(help="Comma-separated training z indices.")] = None,
    metadata: Annotated[
        Path | None, typer.Option(help="JSON whose annotated_slices are the training slices.")
    ] = None,
    z_range: ZRange = None,
    use_all: AllZ = False,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Segment VOLUME with multi-Otsu or a random forest trained on annotated slices.

    The result is evaluated like a network's: on the test split when the volume has one,
    else on the z-slices that hold no training slice.
    """
    from dlpipe.baselines import baseline as run_baseline
    from dlpipe.config import validate_config
    from dlpipe.errors import UserError
    from dlpipe.tracking import stage_run

    config = load()
    if method is not None:
        config["baselines"]["method"] = method
    config = validate_config(config, source="command line")
    params = config["baselines"]
    try:
        z_list = [int(s) for s in slices.split(",") if s.strip()] if slices else None
    except ValueError:
        raise UserError(f"--slices must be comma-separated integers, got {slices!r}") from None
    with stage_run(
        config, "baseline", dataset=str(volume), model=params["method"], params=params
    ) as run:
        run_baseline(
            volume,
            truth,
            out,
            metrics,
            params,
            config["evaluation"],
            slices=z_list,
            metadata=metadata,
            z_range=z_range,
            use_all=use_all,
            overwrite=overwrite,
            run=run,
        )
