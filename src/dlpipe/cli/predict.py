"""``dlpipe predict``: segment a volume or dataset with a trained model (U-Net, Mask R-CNN or
instance U-Net)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, link_tags, run_stage
from dlpipe.cli._options import SetItems, Strict, config_option, out_option, overwrite_option
from dlpipe.errors import UserError
from dlpipe.stores.card import read_card, train_run_id


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (card.json + weights.pt).")],
    volume: Annotated[
        Path, typer.Argument(help="VOL.zarr from `dlpipe tile` (Mask R-CNN: or a dataset Zarr).")
    ],
    out: Annotated[Path, out_option("PRED.zarr to write.")],
    scheduler: Annotated[
        str | None,
        config_option(
            "Address of a dask.distributed scheduler, or local-cluster:N (default: local threads)",
            "predict.scheduler",
            metavar="ADDRESS",
        ),
    ] = None,
    threads: Annotated[
        int | None, config_option("Blocks predicted at once", "predict.threads")
    ] = None,
    block: Annotated[
        tuple[int, int, int] | None,
        config_option("Output block (= chunk)", "predict.block", metavar="Z Y X"),
    ] = None,
    probabilities: Annotated[
        bool | None,
        config_option(
            "Also write float16 probabilities",
            "predict.probabilities",
            "--probabilities/--no-probabilities",
        ),
    ] = None,
    tta: Annotated[
        int | None, config_option("Dihedral TTA elements, 1 = off", "predict.tta")
    ] = None,
    device: Annotated[str | None, config_option("auto, cpu or cuda", "predict.device")] = None,
    slab: Annotated[
        tuple[int, int] | None,
        typer.Option(
            help="Only the I-th of N z-slabs of blocks (one job of a split run; "
            "run --prepare first and --gather after).",
            metavar="I N",
            show_default=False,
        ),
    ] = None,
    prepare: Annotated[
        bool, typer.Option("--prepare", help="Only create OUT and its manifest (split runs).")
    ] = False,
    gather_only: Annotated[
        bool, typer.Option("--gather", help="Only mark OUT complete once all slabs are done.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            help="Finish an interrupted run (same model and layout); with "
            "--overwrite, start again when they differ."
        ),
    ] = False,
    overwrite: Annotated[bool, overwrite_option("Replace an existing output.")] = False,
    strict: Strict = None,
    score_threshold: Annotated[
        float | None,
        config_option(
            "Mask R-CNN: drop detections below this score", "predict.maskrcnn.score_threshold"
        ),
    ] = None,
    tile_overlap: Annotated[
        float | None,
        config_option(
            "Mask R-CNN: overlap of neighbouring tiles, a fraction of the tile",
            "predict.maskrcnn.overlap",
        ),
    ] = None,
    slices: Annotated[
        str | None,
        config_option(
            "Mask R-CNN on a volume: 'all' z-slices or the 'test' split", "predict.maskrcnn.slices"
        ),
    ] = None,
    set_: SetItems = None,
) -> None:
    """Predict VOLUME with the model in MODEL_DIR into OUT.

    A Mask R-CNN model (card "model": "maskrcnn") predicts the instances of every image of
    a dataset Zarr (`images`, e.g. from `dlpipe cvat`) or every z-slice of a tiled volume,
    tile by tile with merging across tiles: OUT gets `instances` (uint32), `semantic`
    (uint8) and instances.csv/.parquet (docs/instances.md). An instance U-Net (card "model":
    "instance-unet") writes the same, from its maps and a seeded watershed (thresholds: the
    card's tuned values, or --set instance_unet.seed_threshold=...); a tiled volume goes block
    by block with objects joined across blocks.

    With a U-Net, each output block is predicted from the block plus a halo of real neighbouring
    voxels (mirror padding only at the volume border) with Gaussian-blended sliding
    windows; OUT/labels/<name>/0 gets the argmax (uint8), OUT/probabilities/0 the
    float16 probabilities if asked. OUT is an OME-Zarr image (napari-ome-zarr, `ome_zarr
    info`): the labels get the volume's pyramid (OUT/labels/<name>/1, ...) and class names,
    OUT/0, 1, ... the label values as a hidden image. OUT's completion marker is written last.
    Killed and re-run (with or without --resume), only the missing blocks are computed. Ends
    with one line: blocks predicted, speed, peak memory and OUT.
    """
    # stage imports are deferred: `--help` stays fast
    from dlpipe.prediction import gather
    from dlpipe.prediction import predict as run_predict

    if gather_only:
        if not gather(out):
            raise UserError("blocks are missing; cannot gather yet", path=out)
        typer.echo(f"complete: {out}")
        return
    options = {
        "threads": threads,
        "tta": tta,
        "device": device,
        "probabilities": probabilities,
        "block": block,
        "maskrcnn.score_threshold": score_threshold,
        "maskrcnn.overlap": tile_overlap,
        "maskrcnn.slices": slices,
        "strict": strict,
    }
    config = configure("predict", options, set_)
    card = read_card(model_dir)  # read once, before the run starts: a bad card is one line
    run_stage(
        config,
        "predict",
        # The library dispatches on the card's model family and says what to log.
        lambda run: run_predict(
            model_dir,
            volume,
            out,
            config["predict"],
            card=card,
            scheduler=scheduler,
            overwrite=overwrite,
            resume=resume,
            slab=tuple(slab) if slab else None,
            prepare_only=prepare,
        ),
        dataset=volume,
        model=model_dir.name,
        kind=str(card.get("model", "")),
        tags=link_tags({"train_run_id": train_run_id(model_dir)}),
        inputs=volume,
    )
