"""The table of a sweep's models, read from their model cards, metrics and benchmark files."""

from __future__ import annotations

import csv
import io
import json
import logging
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
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc.msg})", path=path) from None


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
    slices = params.get("max_images") or int(train[1]) - int(train[0])
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
    return row


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
) -> list[dict[str, Any]]:
    """Write the sweep summary into ``out_dir``.

    Parameters
    ----------
    models : model name -> (card.json, evaluation metrics JSON, train benchmark file or None)
    out_dir : receives ``jaccard_vs_parameters.png``, ``learning_curve.png`` and, last,
        ``models.csv`` (one row per model, sorted by name)

    Returns
    -------
    list of dict
        The rows of the table.
    """
    from dlpipe.summary.plots import jaccard_vs_parameters, learning_curve, save

    if not models:
        raise UserError("no model to summarise")
    rows = [model_row(n, *paths) for n, paths in sorted(models.items())]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fname, fig in (
        ("jaccard_vs_parameters.png", jaccard_vs_parameters(rows)),
        ("learning_curve.png", learning_curve(rows)),
    ):
        save(fig, out / fname)
    write_text_atomic(out / "models.csv", _csv_text(rows))
    log.info("summary: %d models -> %s", len(rows), out / "models.csv")
    return rows
