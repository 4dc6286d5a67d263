"""``dlpipe evaluate``: per-class scores of a prediction against the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load

ZRange = Annotated[
    tuple[int, int] | None,
    typer.Option(
        "--z-range",
        help="Half-open z-range Z0 Z1 to evaluate (default: the test split, else everything).",
        show_default=False,
    ),
]
AllZ = Annotated[
    bool, typer.Option("--all", help="Evaluate every z-slice, ignoring the test split.")
]


def _classes(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predicted labels: Zarr array, OME-Zarr or TIFF.")],
    truth: Annotated[Path, typer.Argument(help="True labels: Zarr array, OME-Zarr or TIFF.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Metrics JSON (CSV and plots beside it).")
    ],
    image: Annotated[
        Path | None, typer.Option(help="Grey image for the overlays (default: OME-Zarr level 0).")
    ] = None,
    z_range: ZRange = None,
    use_all: AllZ = False,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names [config: evaluation.classes].")
    ] = None,
    ignore_index: Annotated[
        int | None, typer.Option(help="Unlabelled truth value [config: evaluation.ignore_index].")
    ] = None,
    instances: Annotated[
        bool,
        typer.Option(
            "--instances",
            help="Instance metrics: PRED is a Mask R-CNN prediction "
            "Zarr, TRUTH a dataset Zarr with `instances` + `semantic`.",
        ),
    ] = False,
) -> None:
    """Score a predicted label volume against the truth, chunk by chunk.

    Writes OUT (JSON with per_class and mean_jaccard), OUT with .csv, and OUT_plots/ (Jaccard
    bars, confusion heatmap, overlays with errors in red), all logged to MLflow. A class absent
    from both volumes has Jaccard null (NaN) and is left out of the mean.

    With --instances: matching by mask IoU per image and class (COCO rules); precision,
    recall, F1 at IoU 0.5, AP@[.50:.95], AP50, AP75 and counts per class and overall into
    OUT, OUT with .csv and OUT_plots/ (AP/F1 bars, outline overlays); docs/instances.md.
    """
    from dlpipe.config import validate_config
    from dlpipe.evaluation import evaluate as run_evaluate
    from dlpipe.tracking import stage_run

    config = load()
    if instances:
        from dlpipe.evaluation.instances import evaluate_instances

        params = config["evaluation"]["instances"]
        with stage_run(
            config,
            "evaluate",
            dataset=str(truth),
            model=str(pred),
            params=params | {"kind": "instances"},
        ) as run:
            result = evaluate_instances(pred, truth, out, params, run=run)
        o = result["overall"]
        typer.echo(
            f"AP {o['ap']:.3f}, AP50 {o['ap50']:.3f}, F1@{result['f1_iou']:g} "
            f"{o['f1']:.3f} ({o['n_matched']} of {o['n_true']} true matched, "
            f"{o['n_pred']} predicted): {out}"
        )
        return
    if classes is not None:
        config["evaluation"]["classes"] = _classes(classes)
    if ignore_index is not None:
        config["evaluation"]["ignore_index"] = ignore_index
    config = validate_config(config, source="command line")
    params = config["evaluation"]
    with stage_run(config, "evaluate", dataset=str(truth), model=str(pred), params=params) as run:
        run_evaluate(
            pred, truth, out, params, image_path=image, z_range=z_range, use_all=use_all, run=run
        )
