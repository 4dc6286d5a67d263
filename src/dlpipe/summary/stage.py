"""The ``summary`` stage: the sweep table and plots from the evaluation JSON of each model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlpipe.results import StageResult
from dlpipe.stores.atomic import check_outputs
from dlpipe.summary.table import best_lines, summarise

__all__ = ["summarise_metrics"]

PLOTS = ("jaccard_vs_parameters.png", "learning_curve.png")


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
        [out / "models.csv", *(out / png for png in PLOTS)],
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
    lines = [
        f"summarised {len(entries)} models and {len(bases)} baselines: {out / 'models.csv'}",
        *best_lines(rows),
    ]
    return StageResult(
        {"rows": rows},
        artifacts=[out / "models.csv", *(out / png for png in PLOTS)],
        summary="\n".join(lines),
    )
