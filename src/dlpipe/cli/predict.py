"""``dlpipe predict``: segment a tiled volume with a trained U-Net, block by block."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model folder (card.json + weights.pt).")],
    volume: Annotated[
        Path, typer.Argument(help="VOL.zarr from `dlpipe tile` (Mask R-CNN: or a dataset Zarr).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="PRED.zarr to write.")],
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Address of a dask.distributed scheduler, or local-cluster:N "
            "[config: predict.scheduler; default: local threads]."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Blocks predicted at once [config: predict.threads].")
    ] = None,
    block: Annotated[
        tuple[int, int, int] | None,
        typer.Option(
            help="Output block Z Y X = chunk [config: predict.block].", show_default=False
        ),
    ] = None,
    probabilities: Annotated[
        bool | None,
        typer.Option(
            "--probabilities/--no-probabilities",
            help="Also write float16 probabilities [config: predict.probabilities].",
            show_default=False,
        ),
    ] = None,
    tta: Annotated[
        int | None, typer.Option(help="Dihedral TTA elements, 1 = off [config: predict.tta].")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda [config: predict.device].")
    ] = None,
    slab: Annotated[
        tuple[int, int] | None,
        typer.Option(
            help="I N: only the I-th of N z-slabs of blocks (one job of a split run; "
            "run --prepare first and --gather after).",
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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            help="Mask R-CNN: drop detections below this score "
            "[config: predict.maskrcnn.score_threshold].",
            show_default=False,
        ),
    ] = None,
    tile_overlap: Annotated[
        float | None,
        typer.Option(
            help="Mask R-CNN: overlap of neighbouring tiles, a fraction of the tile "
            "[config: predict.maskrcnn.overlap].",
            show_default=False,
        ),
    ] = None,
    slices: Annotated[
        str | None,
        typer.Option(
            help="Mask R-CNN on a volume: 'all' z-slices or the 'test' split "
            "[config: predict.maskrcnn.slices].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict VOLUME with the model in MODEL_DIR into OUT.

    A Mask R-CNN model (card "model": "maskrcnn") predicts the instances of every image of
    a dataset Zarr (`images`, e.g. from `dlpipe cvat`) or every z-slice of a tiled volume,
    tile by tile with merging across tiles: OUT gets `instances` (uint32), `semantic`
    (uint8) and instances.csv/.parquet (docs/instances.md).

    With a U-Net, each output block is predicted from the block plus a halo of real neighbouring
    voxels (mirror padding only at the volume border) with Gaussian-blended sliding
    windows; OUT/labels/<name>/0 gets the argmax (uint8), OUT/probabilities/0 the
    float16 probabilities if asked. OUT/.dlpipe_complete is written last. Killed and
    re-run with --resume, only the missing blocks are computed.
    """
    from dlpipe.config import validate_config
    from dlpipe.errors import UserError
    from dlpipe.prediction import gather
    from dlpipe.prediction import predict as run_predict
    from dlpipe.stores.card import model_family, read_card
    from dlpipe.tracking import stage_run

    if gather_only:
        if not gather(out):
            raise UserError("blocks are missing; cannot gather yet", path=out)
        typer.echo(f"complete: {out}")
        return
    config = load()
    card = read_card(model_dir)  # read once: tags the run, then goes to the library
    family = model_family(card, model_dir / "card.json")
    if family == "maskrcnn":
        _predict_instances(
            config,
            card,
            model_dir,
            volume,
            out,
            device,
            overwrite,
            {"score_threshold": score_threshold, "overlap": tile_overlap, "slices": slices},
        )
        return
    section = dict(config["predict"])
    for key, value in (
        ("threads", threads),
        ("tta", tta),
        ("device", device),
        ("probabilities", probabilities),
    ):
        if value is not None:
            section[key] = value
    if block is not None:
        section["block"] = list(block)
    config["predict"] = section
    config = validate_config(config, source="command line")
    params = config["predict"]
    with stage_run(
        config,
        "predict",
        dataset=volume.name,
        model=family,
        params=params
        | {"model_dir": str(model_dir), "scheduler": scheduler or params["scheduler"]},
    ) as run:
        summary = run_predict(
            model_dir,
            volume,
            out,
            params,
            card=card,
            scheduler=scheduler,
            overwrite=overwrite,
            resume=resume,
            slab=tuple(slab) if slab else None,
            prepare_only=prepare,
        )
        run.log_metrics(
            {
                k: float(summary[k])
                for k in (
                    "voxels_per_s",
                    "seconds",
                    "peak_rss_mb",
                    "blocks",
                    "blocks_predicted",
                    "blocks_done_before",
                    "voxels",
                    "windows",
                )
            }
        )
        if (out / ".dlpipe_manifest.json").is_file():
            run.log_artifact(out / ".dlpipe_manifest.json")
    typer.echo(
        f"predicted {summary['blocks_predicted']} of {summary['blocks']} blocks "
        f"({summary['blocks_done_before']} done before), "
        f"{summary['voxels_per_s']:.0f} voxels/s, peak RSS {summary['peak_rss_mb']:.0f} MiB"
        f"{'' if summary['complete'] else ' (slab done; output not yet complete)'}: {out}"
    )


def _predict_instances(
    config: dict,
    card: dict,
    model_dir: Path,
    source: Path,
    out: Path,
    device: str | None,
    overwrite: bool,
    overrides: dict,
) -> None:
    """`dlpipe predict` with a Mask R-CNN model: instances of a dataset or volume slices."""
    from dlpipe.config import validate_config
    from dlpipe.prediction import predict as run_predict
    from dlpipe.prediction.instances import TABLE
    from dlpipe.tracking import stage_run

    section = dict(config["predict"])
    section["maskrcnn"] = dict(section["maskrcnn"]) | {
        k: v for k, v in overrides.items() if v is not None
    }
    if device is not None:
        section["device"] = device
    config["predict"] = section
    config = validate_config(config, source="command line")
    params = config["predict"]["maskrcnn"]
    with stage_run(
        config,
        "predict",
        dataset=source.name,
        model="maskrcnn",
        params=params | {"model_dir": str(model_dir), "device": config["predict"]["device"]},
    ) as run:
        summary = run_predict(
            model_dir, source, out, config["predict"], card=card, overwrite=overwrite
        )
        run.log_metrics(
            {
                k: float(summary[k])
                for k in ("images", "instances", "tiles", "seconds", "images_per_s")
            }
        )
        run.log_artifact(out / TABLE)
    typer.echo(
        f"predicted {summary['instances']} instances in {summary['images']} images "
        f"({summary['tiles']} tiles, {summary['seconds']:.1f} s): {out}"
    )
