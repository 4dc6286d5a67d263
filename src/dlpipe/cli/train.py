"""``dlpipe train``: train a segmentation model from Zarr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def train(
    store: Annotated[
        Path,
        typer.Argument(
            help="VOL.zarr from `dlpipe tile`, or a dataset Zarr from `dlpipe cvat` / "
            "`dlpipe import` (Mask R-CNN needs its instances)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    model: Annotated[
        str | None, typer.Option(help="unet or maskrcnn [config: train.model].")
    ] = None,
    input_mode: Annotated[
        str | None, typer.Option("--input", help="2d, 2.5d or 3d [config: train.input].")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs [config: train.epochs].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [config: train.seed].")] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda [config: train.device].")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=JSON override of a train.* key, e.g. --set lr=1e-4."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.pt.")] = False,
    resume_or_start: Annotated[
        bool,
        typer.Option(
            "--resume-or-start",
            help="Resume from OUT/checkpoints/last.pt when its settings match, else start "
            "again (replacing OUT); what the workflow uses.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
) -> None:
    """Train a U-Net (2D, 2.5D or 3D) or a Mask R-CNN (--model maskrcnn).

    Writes OUT/weights.pt, OUT/card.json (last), OUT/metrics.csv, OUT/plots/*.png and
    OUT/checkpoints/{best,last}.pt. U-Net: labels of 255 are unlabelled (sparse
    supervision). Mask R-CNN: trains on the instances of a dataset Zarr; its own settings
    are train.maskrcnn.* (e.g. --set maskrcnn.backbone=resnet50).
    """
    from dlpipe.config import validate_config
    from dlpipe.errors import UserError
    from dlpipe.tracking import stage_run
    from dlpipe.training import train as train_model

    config = load()
    section = dict(config["train"])
    for key, value in (
        ("model", model),
        ("input", input_mode),
        ("epochs", epochs),
        ("seed", seed),
        ("device", device),
    ):
        if value is not None:
            section[key] = value
    for item in set_ or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = section
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    config["train"] = section
    config = validate_config(config, source="command line")
    params = config["train"]
    if resume_or_start:
        from dlpipe.training.resume import resume_or_start as decide

        resume = decide(out, params)
        overwrite = overwrite or not resume
    with stage_run(
        config, "train", dataset=store.name, model=params["model"], params=params
    ) as run:
        card = train_model(store, out, params, run=run, resume=resume, overwrite=overwrite)
        if card["model"] == "maskrcnn":
            typer.echo(
                f"trained Mask R-CNN {card['architecture']['backbone']}-FPN "
                f"({card['parameters']} parameters), best epoch {card['best_epoch']}, "
                f"val loss {card['val_loss']}: {out}"
            )
        else:
            typer.echo(
                f"trained {card['input']} U-Net ({card['parameters']} parameters), best epoch "
                f"{card['best_epoch']}, val mean Jaccard {card['val_mean_jaccard']}: {out}"
            )
