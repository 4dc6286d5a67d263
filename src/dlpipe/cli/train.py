"""``dlpipe train``: train a segmentation model from Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, run_stage
from dlpipe.cli._options import SetItems, Strict, config_option, out_option, overwrite_option
from dlpipe.errors import UserError
from dlpipe.labels import config_class_names


@app.command()
def train(
    store: Annotated[
        Path,
        typer.Argument(
            help="VOL.zarr from `dlpipe tile`, or a dataset Zarr from `dlpipe cvat` / "
            "`dlpipe import` (Mask R-CNN and instance-unet need its instances; instance-unet "
            "also trains on a tiled volume with an instance label array)."
        ),
    ],
    out: Annotated[Path, out_option("Model folder to write.")],
    model: Annotated[
        str | None, config_option("unet, maskrcnn or instance-unet", "train.model")
    ] = None,
    input_mode: Annotated[
        str | None, config_option("2d, 2.5d or 3d", "train.input", "--input")
    ] = None,
    epochs: Annotated[int | None, config_option("Maximum epochs", "train.epochs")] = None,
    seed: Annotated[int | None, config_option("Random seed", "train.seed")] = None,
    device: Annotated[str | None, config_option("auto, cpu or cuda", "train.device")] = None,
    set_: SetItems = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints/last.pt.")] = False,
    resume_or_start: Annotated[
        bool,
        typer.Option(
            "--resume-or-start",
            help="Resume from OUT/checkpoints/last.pt when its settings match, else start "
            "again (replacing OUT); what the workflow uses.",
        ),
    ] = False,
    overwrite: Annotated[bool, overwrite_option("Replace an existing model folder.")] = False,
    strict: Strict = None,
) -> None:
    """Train a U-Net (2D, 2.5D or 3D), a Mask R-CNN (--model maskrcnn) or an instance U-Net
    (--model instance-unet: semantic, boundary and distance heads, then a seeded watershed whose
    thresholds are tuned on the validation images; its settings are train.instance_unet.*).

    Writes OUT/weights.pt, OUT/card.json (last), OUT/metrics.csv, OUT/plots/*.png and
    OUT/checkpoints/{best,last}.pt. U-Net: labels of 255 are unlabelled (sparse
    supervision). Mask R-CNN: trains on the instances of a dataset Zarr; its own settings
    are train.maskrcnn.* (e.g. --set maskrcnn.backbone=resnet50).
    """
    # stage imports are deferred: `dlpipe --help` stays fast
    from dlpipe.training import train as fit
    from dlpipe.training.resume import resume_or_start as decide

    options = {
        "model": model,
        "input": input_mode,
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "strict": strict,
    }
    config = configure("train", options, set_)
    params = config["train"]
    if params["model"] == "unet" and params["classes"] is None:
        # one set of class names: the config's `matrix`, not CVAT's `background`
        params["classes"] = _config_classes(
            store, params["labels"], config["evaluation"]["classes"]
        )
    if resume_or_start:
        resume = decide(out, params)
        overwrite = overwrite or not resume
    run_stage(
        config,
        "train",
        # the library logs each epoch to `run` as it trains, and the model at the end
        lambda run: fit(store, out, params, run=run, resume=resume, overwrite=overwrite),
        dataset=store,
        model=out.name,
        kind=params["model"],
        params=params,
        inputs=store,
        model_dir=out,
    )


def _config_classes(store: Path, labels: str, configured: list[str] | None) -> list[str] | None:
    """The config's class names if ``store`` (a CVAT dataset, or a volume's label pyramid
    ``labels``, such as the placed annotations) names class 0 ``background`` and its other
    classes as the config does."""
    from dlpipe.stores.dataset import is_dataset, open_store  # zarr: deferred
    from dlpipe.training.stores import label_classes

    try:
        group, keys = open_store(store)
    except UserError:
        return None  # training says what is wrong with the store
    if is_dataset(keys):
        stored = list(group.attrs.get("classes", []))
    else:
        stored = label_classes(group, labels)
    return config_class_names(stored, configured)
