"""``dlpipe synth``: the built-in demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the demo data into.")],
    seed: Annotated[int | None, typer.Option(help="Random seed [config: synth.seed].")] = None,
    shape: Annotated[
        tuple[int, int, int] | None,
        typer.Option(
            help="Volume shape Z Y X in voxels [config: synth.shape].", show_default=False
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace files already in OUT_DIR.")] = False,
) -> None:
    """Make a synthetic X-ray CT scan of a glass-fibre composite, with labels and a CVAT export.

    Three phases (0 matrix, 1 fibre, 2 pore): straight fibres with a preferred direction,
    small ellipsoidal pores, blur, Poisson and Gaussian noise, and ring artefacts. Writes
    OUT_DIR/volume.tif, OUT_DIR/labels.tif, OUT_DIR/cvat/annotations.xml with
    OUT_DIR/cvat/images/slice_ZZZZ.png (annotated z-slices) and OUT_DIR/metadata.json.
    The same seed gives identical files.
    """
    from dlpipe.config import validate_config
    from dlpipe.synth import make_demo
    from dlpipe.tracking import stage_run

    config = load()
    if seed is not None:
        config["synth"]["seed"] = seed
    if shape is not None:
        config["synth"]["shape"] = list(shape)
    config = validate_config(config, source="command line")
    params = config["synth"]
    with stage_run(config, "synth", dataset="synthetic-gfrp", params=params) as run:
        meta = make_demo(out_dir, params, overwrite=overwrite)
        run.log_metrics(
            {f"fraction_{k}": v for k, v in meta["phase_fractions"].items()}
            | {"fibres": meta["fibres"], "pores": meta["pores"]}
        )
        run.log_artifact(Path(out_dir) / "metadata.json")
