"""``dlpipe synth``: the built-in demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import config_option, overwrite_option


@app.command()
def synth(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to write the demo data into.", metavar="OUT_DIR")
    ],
    seed: Annotated[int | None, config_option("Random seed", "synth.seed")] = None,
    shape: Annotated[
        tuple[int, int, int] | None,
        config_option("Volume shape Z Y X in voxels", "synth.shape", metavar="Z Y X"),
    ] = None,
    overwrite: Annotated[bool, overwrite_option("Replace files already in OUT_DIR.")] = False,
) -> None:
    """Make a synthetic X-ray CT scan of a glass-fibre composite, with labels and a CVAT export.

    Three phases (0 matrix, 1 fibre, 2 pore): straight fibres with a preferred direction,
    small ellipsoidal pores, blur, Poisson and Gaussian noise, and ring artefacts. Writes
    OUT_DIR/volume.tif, OUT_DIR/labels.tif, OUT_DIR/pore_instances.tif (truth pore
    instances, one id per pore ellipsoid), OUT_DIR/cvat/annotations.xml with
    OUT_DIR/cvat/images/slice_ZZZZ.png (annotated z-slices, one shape per pore) and
    OUT_DIR/metadata.json.
    The same seed gives identical files.
    """
    from dlpipe.synth import make_demo  # stage imports are deferred: `dlpipe --help` stays fast

    config = configure("synth", {"seed": seed, "shape": shape})
    params = config["synth"]
    run_stage(
        config,
        "synth",
        lambda run: make_demo(out_dir, params, overwrite=overwrite),
        dataset=out_dir,
        kind="data",
        params=params,
    )
