"""The ``summary`` stage: the sweep table and plots from the evaluation JSON of each model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs
from dlpipe.summary.report import write_report_tables
from dlpipe.summary.table import best, best_lines, summarise

__all__ = ["summarise_metrics"]

PLOTS = ("jaccard_vs_parameters.png", "learning_curve.png")
HTML = ("models.html", "cards.html")


def summarise_metrics(
    metrics: Sequence[str | Path],
    out_dir: str | Path,
    *,
    models: str | Path = "results/models",
    bench: str | Path | None = None,
    baselines: Sequence[str | Path] = (),
    overwrite: bool = False,
) -> StageResult:
    """Summarise the models whose evaluation JSON files are ``metrics``.

    Parameters
    ----------
    metrics : evaluation JSON of each model; a model's name is the folder holding it
    out_dir : receives ``models.csv`` and the plots (:func:`~dlpipe.summary.summarise`)
    models : folder of the model folders (``<models>/<model>/card.json``)
    bench : folder of the Snakemake benchmark files (``train_<model>.tsv``), if any
    baselines : evaluation JSON of each baseline segmentation (``otsu``, ``rf``); a baseline's
        name is the folder holding it
    overwrite : replace an existing table and plots in ``out_dir`` (checked before any work)

    Returns
    -------
    StageResult
        ``{"rows": [...]}``, with the table and the plots to log.
    """
    models, out = Path(models), Path(out_dir)
    check_outputs(
        [out / "models.csv", *(out / png for png in PLOTS), *(out / h for h in HTML)],
        overwrite=overwrite,
        inputs=[*metrics, *baselines],
    )
    entries = {
        Path(m).parent.name: (
            models / Path(m).parent.name / "card.json",
            Path(m),
            Path(bench) / f"train_{Path(m).parent.name}.tsv" if bench else None,
        )
        for m in metrics
    }
    bases = {
        Path(m).parent.name: (
            Path(m),
            Path(bench) / f"baseline_{Path(m).parent.name}.tsv" if bench else None,
        )
        for m in baselines
    }
    rows = summarise(entries, out, bases)
    best = best_lines(rows)
    lines = [
        f"summarised {len(entries)} models and {len(bases)} baselines: {out / 'models.csv'}",
        *best,
    ]
    tables = write_report_tables(
        rows, {k: v[0] for k, v in entries.items()}, out, best, overwrite=True
    )  # checked above
    return StageResult(
        {"rows": rows},
        **_findings(rows, len(entries), len(bases)),
        artifacts=[out / "models.csv", *(out / png for png in PLOTS), *tables],
        summary="\n".join(lines),
    )


def _findings(rows: list[dict], n_models: int, n_baselines: int) -> dict[str, dict]:
    """The best segmentation overall and the best model, as MLflow metrics, params and tags.

    Logged to the summary run and to the workflow's parent run.
    """
    metrics: dict[str, float] = {"models": n_models, "baselines": n_baselines}
    named: dict[str, str] = {}
    for key, row in (("best_overall", best(rows)), ("best_model", best(rows, models_only=True))):
        if row is not None:
            metrics[f"{key}_mean_jaccard"] = float(row["mean_jaccard"])
            named[key] = str(row["model"])
    return {"metrics": metrics, "params": dict(named), "tags": dict(named)}
