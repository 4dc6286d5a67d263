"""``dlpipe evaluate``: per-class scores of a prediction against the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, configure, link_tags, load, run_stage
from dlpipe.cli._options import (
    AllZ,
    ZRange,
    comma_list,
    config_option,
    out_option,
    overwrite_option,
)
from dlpipe.tracking import lineage


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predicted labels: Zarr array, OME-Zarr or TIFF.")],
    truth: Annotated[Path, typer.Argument(help="True labels: Zarr array, OME-Zarr or TIFF.")],
    out: Annotated[Path, out_option("Metrics JSON (CSV and plots beside it).")],
    image: Annotated[
        Path | None,
        typer.Option(
            help="Grey image for the overlays (default: OME-Zarr level 0).", metavar="PATH"
        ),
    ] = None,
    z_range: ZRange = None,
    use_all: AllZ = False,
    classes: Annotated[
        str | None,
        config_option("Comma-separated class names", "evaluation.classes", metavar="A,B"),
    ] = None,
    ignore_index: Annotated[
        int | None, config_option("Unlabelled truth value", "evaluation.ignore_index")
    ] = None,
    instances: Annotated[
        bool,
        typer.Option(
            "--instances",
            help="Instance metrics: PRED is a Mask R-CNN or instance-unet prediction "
            "Zarr, TRUTH a dataset Zarr with `instances` + `semantic`; or both instance "
            "label volumes (TIFF, STORE/labels/NAME).",
        ),
    ] = False,
    components: Annotated[
        str | None,
        typer.Option(
            help="With --instances: PRED is a semantic label volume and the 26-connected "
            "components of this class are its instances (the Otsu + components floor).",
            metavar="CLASS",
        ),
    ] = None,
    overwrite: Annotated[bool, overwrite_option("Replace OUT (and its CSV) if it exists.")] = False,
    annotations: Annotated[
        bool,
        typer.Option(
            "--annotations",
            help="Annotation score: TRUTH is VOL.zarr with annotations placed in it; score "
            "its held-out test slices only (the default when TRUTH has no dense labels).",
        ),
    ] = False,
) -> None:
    """Score a predicted label volume against the truth, chunk by chunk.

    Writes OUT (JSON with per_class and mean_jaccard), OUT with .csv, and OUT_plots/ (Jaccard
    bars, confusion heatmap, overlays with errors in red), all logged to MLflow. A class absent
    from both volumes has Jaccard null (NaN) and is left out of the mean. Ends with one line:
    mean and per-class Jaccard (3 digits), the slices scored and OUT.

    With --instances: matching by mask IoU per image and class (COCO rules); precision,
    recall, F1 at IoU 0.5, AP@[.50:.95], AP50, AP75, panoptic quality (PQ = SQ x RQ at
    IoU > 0.5), count error and the Wasserstein-1 distance of equivalent diameters, per
    class and overall, into OUT, OUT with .csv and OUT_plots/ (bars, size histograms,
    outline overlays). Label volumes are scored as 3D objects over the test split (or
    --z-range / --all), slab by slab; docs/instances.md.
    """
    # stage imports are deferred: `dlpipe --help` stays fast
    from dlpipe.evaluation import evaluate as score
    from dlpipe.evaluation.instance_evaluate import evaluate_instances

    source = lineage(pred)
    if components is not None and not instances:
        from dlpipe.errors import UserError

        raise UserError("--components needs --instances")
    if instances:
        config = load()
        params = config["evaluation"]["instances"]
        run_stage(
            config,
            "evaluate",
            lambda run: evaluate_instances(
                pred,
                truth,
                out,
                params,
                overwrite=overwrite,
                z_range=z_range,
                use_all=use_all,
                components=components,
                classes=config["evaluation"].get("classes"),
            ),
            dataset=truth,
            model=source.get("model", ""),
            kind=source.get("kind", ""),
            params=params | {"kind": "instances"},
            tags=link_tags(source),
            inputs=truth,
        )
        return
    options = {"classes": comma_list(classes), "ignore_index": ignore_index}
    config = configure("evaluation", options)
    params = config["evaluation"]
    run_stage(
        config,
        "evaluate",
        lambda run: score(
            pred,
            truth,
            out,
            params,
            image_path=image,
            z_range=z_range,
            use_all=use_all,
            overwrite=overwrite,
            annotations=True if annotations else None,
        ),
        dataset=truth,
        model=source.get("model", ""),
        kind=source.get("kind", ""),
        params=params,
        tags=link_tags(source),
        inputs=truth,
    )
