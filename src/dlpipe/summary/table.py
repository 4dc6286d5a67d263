"""The table of a sweep's models, read from their model cards, metrics and benchmark files."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.atomic import write_text_atomic

log = logging.getLogger(__name__)

SETTINGS = ("input", "base_filters", "depth", "loss", "annotated_slices")
"""The sweep's axes, in the order of the model names (f<filters>-d<depth>-<loss>-<input>-s<n>)."""


def loss_name(loss: Mapping[str, float]) -> str:
    """A loss dict as a name: terms of non-zero weight joined by "+", weights other than 1
    after "@".

    >>> loss_name({"ce": 1.0, "dice": 1.0, "focal": 0})
    'ce+dice'
    >>> loss_name({"ce": 0.5})
    'ce@0.5'
    """
    return "+".join(k if w == 1 else f"{k}@{w:g}" for k, w in loss.items() if w)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{what} not found", path=path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc.msg})", path=path) from None
    if not isinstance(data, dict):
        raise UserError(f"{what} is not a JSON object", path=path)
    return data


def _bench_seconds(path: Path | None) -> float | None:
    """Wall seconds (column ``s``) of a Snakemake benchmark file, or None without one."""
    if path is None or not path.is_file():
        return None
    rows = list(csv.DictReader(path.read_text().splitlines(), delimiter="\t"))
    return float(rows[-1]["s"]) if rows and rows[-1].get("s") not in (None, "", "NA") else None


def model_row(
    name: str, card_path: str | Path, metrics_path: str | Path, bench_path: str | Path | None
) -> dict[str, Any]:
    """One row of the summary table for model ``name``.

    Parameters
    ----------
    card_path : the model's ``card.json`` (``dlpipe train``)
    metrics_path : its evaluation JSON (``dlpipe evaluate``: ``per_class``, ``mean_jaccard``)
    bench_path : the train job's Snakemake benchmark file (training wall time), optional

    Returns
    -------
    dict
        model, input, base_filters, depth, loss, annotated_slices (``train.max_images``, or
        every training image when it is null), parameters, ``jaccard_<class>`` per class,
        mean_jaccard, val_mean_jaccard, epochs_run, train_s.
    """
    card = _read_json(Path(card_path), "model card")
    metrics = _read_json(Path(metrics_path), "metrics")
    params = card.get("params", {})
    arch = card.get("architecture", {})
    train = card.get("split", {}).get("train", [0, 0])
    if isinstance(train, dict):  # placed annotations: the training slices per axis
        count = sum(len(v) for v in train.values())
    else:  # a z-range of training images
        count = int(train[1]) - int(train[0])
    slices = params.get("max_images") or count
    row: dict[str, Any] = {
        "model": name,
        "input": card.get("input"),
        "base_filters": arch.get("base_filters"),
        "depth": arch.get("depth"),
        "loss": loss_name(card.get("loss") or params.get("loss") or {}),
        "annotated_slices": slices,
        "parameters": card.get("parameters"),
    }
    for cls, m in metrics.get("per_class", {}).items():
        row[f"jaccard_{cls}"] = m.get("jaccard")
    row["mean_jaccard"] = metrics.get("mean_jaccard")
    row["val_mean_jaccard"] = card.get("val_mean_jaccard")
    row["epochs_run"] = card.get("epochs_run")
    row["train_s"] = _bench_seconds(Path(bench_path) if bench_path else None)
    row["kind"] = card.get("model") or "model"
    return row


def baseline_row(
    name: str, metrics_path: str | Path, bench_path: str | Path | None = None
) -> dict[str, Any]:
    """One row of the summary table for the classical baseline ``name`` (``otsu``, ``rf``).

    Parameters
    ----------
    metrics_path : its evaluation JSON (``<results>/baselines/<name>/clean_metrics.json``);
        the ``metrics.json`` of ``dlpipe baseline`` beside it, when there, gives the number of
        annotated slices it was trained on (``training_slices``)
    bench_path : the baseline job's Snakemake benchmark file (fit and prediction), optional

    Returns
    -------
    dict
        The columns of :func:`model_row`; settings, parameters and the validation score are
        empty, ``kind`` is ``baseline``.
    """
    metrics_path = Path(metrics_path)
    metrics = _read_json(metrics_path, "metrics")
    own = metrics_path.parent / "metrics.json"
    slices = None
    if own != metrics_path and own.is_file():
        slices = len(_read_json(own, "metrics").get("training_slices") or []) or None
    row: dict[str, Any] = {"model": name, "annotated_slices": slices}
    for cls, m in metrics.get("per_class", {}).items():
        row[f"jaccard_{cls}"] = m.get("jaccard")
    row["mean_jaccard"] = metrics.get("mean_jaccard")
    row["train_s"] = _bench_seconds(Path(bench_path) if bench_path else None)
    row["kind"] = "baseline"
    return row


def _score(row: Mapping[str, Any]) -> float | None:
    v = row.get("mean_jaccard")
    if v is None or v == "":
        return None
    v = float(v)
    return None if math.isnan(v) else v


def best(
    rows: Sequence[Mapping[str, Any]], *, models_only: bool = False
) -> Mapping[str, Any] | None:
    """The row of the highest mean Jaccard (the first on a tie), or None when none has one.

    ``models_only`` leaves the baselines out.
    """
    scored = [
        r
        for r in rows
        if _score(r) is not None and not (models_only and r.get("kind") == "baseline")
    ]
    return max(scored, key=lambda r: _score(r) or 0.0, default=None)


def best_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``best overall: <name> (mean Jaccard 0.882)`` (baselines included) and
    ``best model: <name> (0.870)`` (trained models only), scores to 3 digits.

    >>> best_lines([{"model": "rf", "kind": "baseline", "mean_jaccard": 0.88184},
    ...             {"model": "m", "kind": "unet", "mean_jaccard": 0.87}])
    ['best overall: rf (mean Jaccard 0.882)', 'best model: m (0.870)']
    """
    overall, model = best(rows), best(rows, models_only=True)
    return [
        f"best overall: {overall['model']} (mean Jaccard {_score(overall):.3f})"
        if overall is not None
        else "best overall: none (no mean Jaccard)",
        f"best model: {model['model']} ({_score(model):.3f})"
        if model is not None
        else "best model: none (no mean Jaccard)",
    ]


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buf.getvalue()


def summarise(
    models: Mapping[str, tuple[str | Path, str | Path, str | Path | None]],
    out_dir: str | Path,
    baselines: Mapping[str, tuple[str | Path, str | Path | None]] | None = None,
) -> list[dict[str, Any]]:
    """Write the sweep summary into ``out_dir``.

    Parameters
    ----------
    models : model name -> (card.json, evaluation metrics JSON, train benchmark file or None)
    out_dir : receives ``jaccard_vs_parameters.png``, ``learning_curve.png`` and, last,
        ``models.csv`` (one row per model, sorted by name, then one per baseline)
    baselines : baseline name (``otsu``, ``rf``) -> (evaluation metrics JSON, benchmark file
        of the baseline job or None); drawn as dashed lines in the plots

    Returns
    -------
    list of dict
        The rows of the table.
    """
    from dlpipe.summary.plots import jaccard_vs_parameters, learning_curve, save

    if not models and not baselines:
        raise UserError("no model to summarise")
    rows = [model_row(n, *paths) for n, paths in sorted(models.items())]
    rows += [baseline_row(n, *paths) for n, paths in sorted((baselines or {}).items())]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fname, fig in (
        ("jaccard_vs_parameters.png", jaccard_vs_parameters(rows)),
        ("learning_curve.png", learning_curve(rows)),
    ):
        save(fig, out / fname)
    write_text_atomic(out / "models.csv", _csv_text(rows), overwrite=True)  # checked first
    log.info("summary: %d rows -> %s", len(rows), out / "models.csv")
    return rows
