"""``dlpipe summary``: the table and plots comparing the models of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlpipe.cli._app import app, load


@app.command()
def summary(
    metrics: Annotated[
        list[Path],
        typer.Argument(help="Evaluation JSON of each model: <results>/unet/<model>/*.json."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the table and plots.")],
    models: Annotated[
        Path, typer.Option(help="Folder of the model folders (<models>/<model>/card.json).")
    ] = Path("results/models"),
    bench: Annotated[
        Path | None,
        typer.Option(help="Folder of the Snakemake benchmark files (train_<model>.tsv)."),
    ] = None,
    baseline: Annotated[
        list[Path] | None,
        typer.Option(
            help="Evaluation JSON of a classical baseline, named after its folder:"
            " <results>/baselines/<method>/clean_metrics.json (repeatable)."
        ),
    ] = None,
) -> None:
    """Summarise models and baselines: OUT/models.csv (settings, parameters, per-phase
    Jaccard, annotated slices, training time), OUT/jaccard_vs_parameters.png and
    OUT/learning_curve.png.

    A model's name is the folder holding its metrics JSON. Ends with the table's path, the
    best segmentation overall (baselines included) and the best model.
    """
    from dlpipe.summary import best_lines, summarise
    from dlpipe.tracking import stage_run

    config = load()
    entries = {
        m.parent.name: (
            models / m.parent.name / "card.json",
            m,
            bench / f"train_{m.parent.name}.tsv" if bench else None,
        )
        for m in metrics
    }
    bases = {
        m.parent.name: (m, bench / f"baseline_{m.parent.name}.tsv" if bench else None)
        for m in baseline or []
    }
    params = {"models": sorted(entries), "baselines": sorted(bases)}
    with stage_run(config, "summary", dataset=str(models), params=params) as run:
        rows = summarise(entries, out, bases)
        run.log_artifact(out / "models.csv")
        for png in ("jaccard_vs_parameters.png", "learning_curve.png"):
            run.log_artifact(out / png)
    typer.echo(f"summarised {len(entries)} models and {len(bases)} baselines: {out / 'models.csv'}")
    for line in best_lines(rows):
        typer.echo(line)
