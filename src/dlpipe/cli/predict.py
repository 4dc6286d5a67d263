"""``dlpipe predict``: segment a tiled volume with a trained U-Net, block by block."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (card.json + weights.pt).")],
    volume: Annotated[Path, typer.Argument(help="VOL.zarr from `dlpipe tile`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PRED.zarr to write.")],
    scheduler: Annotated[
        str | None,
        typer.Option(help="Address of a dask.distributed scheduler, or local-cluster:N "
                     "[config: predict.scheduler; default: local threads]."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Blocks predicted at once [config: predict.threads].")
    ] = None,
    block: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Output block Z Y X = chunk [config: predict.block].",
                     show_default=False),
    ] = None,
    probabilities: Annotated[
        bool | None,
        typer.Option("--probabilities/--no-probabilities",
                     help="Also write float16 probabilities [config: predict.probabilities].",
                     show_default=False),
    ] = None,
    tta: Annotated[
        int | None, typer.Option(help="Dihedral TTA elements, 1 = off [config: predict.tta].")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda [config: predict.device].")
    ] = None,
    slab: Annotated[
        tuple[int, int] | None,
        typer.Option(help="I N: only the I-th of N z-slabs of blocks (one job of a split run; "
                     "run --prepare first and --gather after).", show_default=False),
    ] = None,
    prepare: Annotated[
        bool, typer.Option("--prepare", help="Only create OUT and its manifest (split runs).")
    ] = False,
    gather_only: Annotated[
        bool, typer.Option("--gather", help="Only mark OUT complete once all slabs are done.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Finish an interrupted run (same model and layout); with "
                           "--overwrite, start again when they differ.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Predict VOLUME with the U-Net in MODEL_DIR into OUT (OME-Zarr labels).

    Each output block is predicted from the block plus a halo of real neighbouring
    voxels (mirror padding only at the volume border) with Gaussian-blended sliding
    windows; OUT/labels/<name>/0 gets the argmax (uint8), OUT/probabilities/0 the
    float16 probabilities if asked. OUT/.dlpipe_complete is written last. Killed and
    re-run with --resume, only the missing blocks are computed.
    """
    from dlpipe.config import validate_config
    from dlpipe.errors import UserError
    from dlpipe.prediction import gather, predict_volume
    from dlpipe.prediction.cluster import dask_scheduler
    from dlpipe.tracking import stage_run

    if gather_only:
        if not gather(out):
            raise UserError("blocks are missing; cannot gather yet", path=out)
        typer.echo(f"complete: {out}")
        return
    config = load()
    section = dict(config["predict"])
    for key, value in (("threads", threads), ("tta", tta), ("device", device),
                       ("probabilities", probabilities)):
        if value is not None:
            section[key] = value
    if block is not None:
        section["block"] = list(block)
    config["predict"] = section
    config = validate_config(config, source="command line")
    params = config["predict"]
    card = model_dir / "card.json"
    model_name = json.loads(card.read_text()).get("model", "") if card.is_file() else ""
    with stage_run(config, "predict", dataset=volume.name, model=model_name,
                   params=params | {"model_dir": str(model_dir),
                                    "scheduler": scheduler or params["scheduler"]}) as run:
        with dask_scheduler(scheduler or params["scheduler"]) as address:
            summary = predict_volume(model_dir, volume, out, params, scheduler=address,
                                     overwrite=overwrite, resume=resume,
                                     slab=tuple(slab) if slab else None, prepare_only=prepare)
        run.log_metrics({k: float(summary[k]) for k in (
            "voxels_per_s", "seconds", "peak_rss_mb", "blocks", "blocks_predicted",
            "blocks_done_before", "voxels", "windows")})
        if (out / ".dlpipe_manifest.json").is_file():
            run.log_artifact(out / ".dlpipe_manifest.json")
    typer.echo(
        f"predicted {summary['blocks_predicted']} of {summary['blocks']} blocks "
        f"({summary['blocks_done_before']} done before), "
        f"{summary['voxels_per_s']:.0f} voxels/s, peak RSS {summary['peak_rss_mb']:.0f} MiB"
        f"{'' if summary['complete'] else ' (slab done; output not yet complete)'}: {out}"
    )
