"""``dlpipe summary``: the table and plots comparing the models of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import ListArgumentCommand, app, load, run_stage
from dlpipe.cli._options import out_option, overwrite_option


@app.command(cls=ListArgumentCommand)
def summary(
    metrics: Annotated[
        list[Path],
        typer.Argument(
            help="Evaluation JSON of each model: <results>/unet/<model>/*.json.",
            metavar="METRICS",
        ),
    ],
    out: Annotated[Path, out_option("Folder for the table and plots.")],
    models: Annotated[
        Path,
        typer.Option(
            help="Folder of the model folders (<models>/<model>/card.json).", metavar="PATH"
        ),
    ] = Path("results/models"),
    bench: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the Snakemake benchmark files (train_<model>.tsv).", metavar="PATH"
        ),
    ] = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(
            help="Evaluation JSON of a classical baseline, named after its folder:"
            " <results>/baselines/<method>/clean_metrics.json (repeatable).",
            metavar="PATH",
        ),
    ] = None,
    instances: Annotated[
        str | None,
        typer.Option(
            help="Instead: METRICS are `dlpipe evaluate --instances` JSONs, one per method"
            " named after its folder; writes OUT/NAME.csv and OUT/NAME.html (the workflow's"
            " pores table: --instances pores).",
            metavar="NAME",
        ),
    ] = None,
    overwrite: Annotated[
        bool, overwrite_option("Replace the table and plots in OUT if they exist.")
    ] = False,
) -> None:
    """Summarise models and baselines: OUT/models.csv (settings, parameters, per-phase
    Jaccard, annotated slices, training time), OUT/jaccard_vs_parameters.png and
    OUT/learning_curve.png; with --instances NAME, the instance table OUT/NAME.csv and .html.

    A model's name is the folder holding its metrics JSON. Ends with the table's path, the
    best segmentation overall (baselines included) and the best model.
    """
    from dlpipe.summary.stage import summarise_metrics  # deferred: `--help` stays fast

    config = load()
    if instances is not None:
        from dlpipe.evaluation.instance_summary import summarise_instances

        run_stage(
            config,
            "instances",
            lambda run: summarise_instances(metrics, out, instances, overwrite=overwrite),
            kind="instances",
            params={"methods": sorted({m.parent.name for m in metrics})},
        )
        return
    run_stage(
        config,
        "summary",
        lambda run: summarise_metrics(
            metrics, out, models=models, bench=bench, baselines=baseline or [], overwrite=overwrite
        ),
        kind="summary",
        params={
            "models": sorted({m.parent.name for m in metrics}),
            "baselines": sorted({b.parent.name for b in baseline or []}),
        },
    )
