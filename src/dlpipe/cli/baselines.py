"""``dlpipe baseline``: multi-Otsu and random-forest segmentations, evaluated like a network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import AllZ, ZRange, config_option, out_option, overwrite_option
from dlpipe.errors import UserError


@app.command()
def baseline(
    volume: Annotated[Path, typer.Argument(help="Grey volume: TIFF, Zarr array or OME-Zarr.")],
    truth: Annotated[Path, typer.Argument(help="Labels (training slices and the truth).")],
    out: Annotated[Path, out_option("Predicted OME-Zarr to write.")],
    metrics: Annotated[Path, typer.Option(help="Metrics JSON of the evaluation.", metavar="PATH")],
    method: Annotated[str | None, config_option("otsu or rf", "baselines.method")] = None,
    slices: Annotated[
        str | None, typer.Option(help="Comma-separated training z indices.", metavar="Z,Z")
    ] = None,
    metadata: Annotated[
        Path | None,
        typer.Option(help="JSON whose annotated_slices are the training slices.", metavar="PATH"),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="VOL.zarr of `dlpipe cvat --volume`: train on the annotations placed there "
            "(labels/annotations, 255 = not annotated), at their annotated z-slices.",
            metavar="PATH",
        ),
    ] = None,
    z_range: ZRange = None,
    use_all: AllZ = False,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Segment VOLUME with multi-Otsu or a random forest trained on annotated slices.

    Writes OUT (OME-Zarr: labels/<name>/0, 1, ... with the volume's pyramid and units) and
    evaluates it like a network's: on the test split when the volume has one, else on the
    z-slices that hold no training slice, into --metrics (JSON), its .csv and
    <metrics stem>_plots/. Ends with one line: the method, mean and per-class Jaccard, OUT.
    """
    from dlpipe.baselines import baseline as segment  # deferred: `--help` stays fast

    config = configure("baselines", {"method": method})
    params = config["baselines"]
    try:
        z_list = [int(s) for s in slices.split(",") if s.strip()] if slices else None
    except ValueError:
        raise UserError(f"--slices must be comma-separated integers, got {slices!r}") from None
    run_stage(
        config,
        "baseline",
        lambda run: segment(
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
            annotations=annotations,
        ),
        dataset=volume,
        model=params["method"],
        kind="baseline",
        params=params,
        inputs=volume,
    )
