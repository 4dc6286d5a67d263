"""The full evaluation of a predicted label volume against the truth."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.evaluation import plots
from dlpipe.evaluation.annotations import annotation_result, annotation_score, has_annotations
from dlpipe.evaluation.metrics import confusion_matrix, error_blobs, scores
from dlpipe.evaluation.volumes import test_range
from dlpipe.results import StageResult, score
from dlpipe.stores import ngff
from dlpipe.stores.atomic import check_outputs, write_json_atomic, write_text_atomic
from dlpipe.stores.html import html_table, write_html_tables
from dlpipe.stores.volume import open_labels

log = logging.getLogger(__name__)


def evaluate_arrays(
    pred: Any,
    truth: Any,
    params: Mapping[str, Any],
    *,
    z_ranges: Sequence[tuple[int, int]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Scores of ``pred`` against ``truth`` (arrays (z, y, x), read chunk by chunk).

    ``params`` is the ``evaluation`` config section (``classes``, ``ignore_index``,
    ``error_blobs``, ``connectivity``). Returns the :func:`~dlpipe.evaluation.scores` dict,
    plus ``error_blobs`` (per class) when enabled and ``z_ranges``.
    """
    classes = params.get("classes")
    ignore = params.get("ignore_index")
    cm = confusion_matrix(
        pred,
        truth,
        z_ranges=z_ranges,
        n_classes=len(classes) if classes else None,
        ignore_index=ignore,
        progress=progress,
    )
    result = scores(cm, classes)
    z_ranges = (
        list(z_ranges)
        if z_ranges is not None
        else [(0, pred.shape[0] if len(pred.shape) == 3 else 1)]
    )
    result["z_ranges"] = [list(map(int, r)) for r in z_ranges]
    if params.get("error_blobs", True):
        errs = error_blobs(
            pred,
            truth,
            cm.shape[0],
            result["classes"],
            z_ranges=z_ranges,
            ignore_index=ignore,
            connectivity=params.get("connectivity", 26),
        )
        for name, entry in errs.items():
            result["per_class"][name].update(entry)
    return result


def write_metrics(
    result: Mapping[str, Any], out_json: str | Path, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``metrics.json`` (NaN as null), a CSV beside it (one row per class) and the same
    table as HTML (``.html``, 3 digits) for the Snakemake report.

    An existing JSON, CSV or HTML table is replaced only with ``overwrite``
    (:func:`dlpipe.stores.atomic.check_output`).
    """
    out_json = Path(out_json)
    write_json_atomic(out_json, dict(result), overwrite=overwrite)
    out_csv = out_json.with_suffix(".csv")
    rows = list(result["per_class"].items())
    cols = sorted(
        {k for _, v in rows for k in v},
        key=lambda k: (k not in _ORDER, _ORDER.index(k) if k in _ORDER else 0, k),
    )
    lines = [["class", *cols]] + [[name, *[_cell(v.get(c)) for c in cols]] for name, v in rows]
    lines.append(
        [
            "mean",
            *[
                _cell(result["mean_jaccard"])
                if c == "jaccard"
                else _cell(result["mean_dice"])
                if c == "dice"
                else ""
                for c in cols
            ],
        ]
    )
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(lines)
    write_text_atomic(out_csv, buf.getvalue(), overwrite=overwrite)
    table = [{"class": name, **v} for name, v in rows]
    table.append({"class": "mean", "jaccard": result["mean_jaccard"], "dice": result["mean_dice"]})
    title = f"{result.get('prediction', out_json.stem)} against {result.get('truth', 'the truth')}"
    write_html_tables(
        out_json.with_suffix(".html"),
        [(title, html_table(table, ["class", *cols]))],
        title,
        overwrite=overwrite,
    )
    return out_json, out_csv


_ORDER = [
    "jaccard",
    "dice",
    "precision",
    "recall",
    "fraction_pred",
    "fraction_true",
    "tp",
    "fp",
    "fn",
]


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else v


def resolve_z_ranges(
    pred_path: str | Path | None,
    truth_path: str | Path | None,
    depth: int,
    *,
    z_range: Sequence[int] | None = None,
    use_all: bool = False,
) -> tuple[list[tuple[int, int]], str]:
    """The z-ranges to evaluate and where they come from ("--z-range", "split", "all")."""
    if z_range is not None:
        z0, z1 = int(z_range[0]), int(z_range[1])
        if not 0 <= z0 < z1 <= depth:
            raise UserError(f"--z-range {z0} {z1} is empty or outside the volume (depth {depth})")
        return [(z0, z1)], "z-range"
    if not use_all:
        paths = [p for p in (pred_path, truth_path) if p is not None]
        test = test_range(*paths)
        if test is not None:
            z0, z1 = max(0, test[0]), min(depth, test[1])
            if z0 >= z1:
                raise UserError(
                    f"the test split [{test[0]}, {test[1]}) is outside the volume (depth {depth})"
                )
            return [(z0, z1)], "split"
    return [(0, depth)], "all"


def evaluate(
    pred_path: str | Path,
    truth_path: str | Path,
    out_json: str | Path,
    params: Mapping[str, Any],
    *,
    image_path: str | Path | None = None,
    z_range: Sequence[int] | None = None,
    use_all: bool = False,
    z_ranges: Sequence[tuple[int, int]] | None = None,
    z_source: str = "given",
    progress: bool = True,
    overwrite: bool = False,
    annotations: bool | None = None,
) -> StageResult:
    """Evaluate a predicted label volume against the truth; write JSON, CSV and figures.

    Parameters
    ----------
    pred_path, truth_path : label volumes (Zarr array, OME-Zarr group with
        ``labels/<labels_name>/0``, or TIFF), same (z, y, x) shape.
    out_json : the metrics JSON; the CSV goes beside it (``.csv``), the figures into
        ``<stem>_plots/``.
    params : the ``evaluation`` config section.
    image_path : grey image for the overlays; default the level ``0`` of an OME-Zarr
        prediction or truth group when there is one.
    z_range : half-open (z0, z1) to evaluate; default the ``dlpipe.split.test`` range of
        either volume's OME-Zarr attributes, else everything. ``use_all`` ignores the split.
    z_ranges : several half-open ranges instead (recorded with ``z_source`` as their origin).
    overwrite : replace an existing ``out_json`` (and its CSV); checked before any work, and
        an output that is one of the inputs is always refused.
    annotations : give the annotation score (:mod:`dlpipe.evaluation.annotations`):
        ``truth_path`` is ``VOL.zarr`` with placed annotations, scored on its held-out test
        slices only; None (default) does so when ``truth_path`` has placed annotations and
        no label image ``labels_name`` (no dense truth).

    Returns
    -------
    StageResult
        The metrics (``per_class``, ``mean_jaccard``, ...), with the scores, the JSON, the CSV
        and the figures to log.
    """
    out_json = Path(out_json)
    check_outputs(
        [out_json, out_json.with_suffix(".csv"), out_json.with_suffix(".html")],
        overwrite=overwrite,
        inputs=[pred_path, truth_path, image_path],
    )
    name = params.get("labels_name", "phases")
    if annotations or (annotations is None and has_annotations(truth_path, name)):
        result, figures = annotation_score(pred_path, truth_path, params)
        out_json = Path(out_json)
        write_metrics(result, out_json)
        files = [out_json, out_json.with_suffix(".csv"), *plots.save_figures(out_json, figures)]
        return annotation_result(result, files)
    pred = open_labels(pred_path, labels_name=name)
    truth = open_labels(truth_path, labels_name=name)
    if tuple(pred.shape) != tuple(truth.shape):
        raise UserError(
            f"prediction shape {tuple(pred.shape)} differs from truth {tuple(truth.shape)}",
            path=pred_path,
        )
    depth = pred.shape[0] if len(pred.shape) == 3 else 1
    if z_ranges is not None:
        z_ranges, source = [(int(a), int(b)) for a, b in z_ranges], z_source
    else:
        z_ranges, source = resolve_z_ranges(
            pred_path, truth_path, depth, z_range=z_range, use_all=use_all
        )
    log.info("evaluating z %s (%s)", z_ranges, source)
    result = evaluate_arrays(pred, truth, params, z_ranges=z_ranges, progress=progress)
    result["z_source"] = source
    result["prediction"] = str(pred_path)
    result["truth"] = str(truth_path)
    write_metrics(result, out_json, overwrite=overwrite)
    figures = make_figures(result, pred, truth, image_path, pred_path, truth_path, params)
    metrics = {
        "mean_jaccard": result["mean_jaccard"],
        "mean_dice": result["mean_dice"],
        "accuracy": result["accuracy"],
    }
    for cname, m in result["per_class"].items():
        for k in ("jaccard", "dice", "precision", "recall", "fraction_pred", "fraction_true"):
            metrics[f"{k}_{cname}"] = m[k]
    return StageResult(
        result,
        metrics={k: v for k, v in metrics.items() if not math.isnan(v)},
        artifacts=[out_json, out_json.with_suffix(".csv"), *plots.save_figures(out_json, figures)],
        summary=score_line(result, out_json),
    )


def score_line(result: Mapping[str, Any], out: str | Path) -> str:
    """``mean Jaccard 0.882 (matrix 0.950, fibre 0.901, pore 0.795) on 24 slices: OUT``.

    >>> score_line({"mean_jaccard": 0.88184, "per_class": {"a": {"jaccard": 0.5},
    ...             "b": {"jaccard": float("nan")}}, "z_ranges": [[0, 4], [8, 10]]}, "m.json")
    'mean Jaccard 0.882 (a 0.500, b n/a) on 6 slices: m.json'
    """
    per_class = ", ".join(f"{c} {score(m['jaccard'])}" for c, m in result["per_class"].items())
    n = sum(int(b) - int(a) for a, b in result.get("z_ranges") or [])
    where = f" on {n} slices" if n else ""
    return f"mean Jaccard {score(result['mean_jaccard'])} ({per_class}){where}: {out}"


def make_figures(
    result: Mapping[str, Any],
    pred: Any,
    truth: Any,
    image_path: Any,
    pred_path: Any,
    truth_path: Any,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Jaccard bars, confusion heatmap and up to ``params['overlays']`` overlay slices."""
    figs = {
        "jaccard.png": plots.jaccard_bars(result),
        "confusion.png": plots.confusion_heatmap(result),
    }
    image = None
    if image_path:
        image = open_labels(image_path, image=True)
        if tuple(image.shape) != tuple(pred.shape):
            raise UserError(
                f"image shape {tuple(image.shape)} differs from the prediction's", path=image_path
            )
    else:
        for cand in (pred_path, truth_path):
            image = _group_image(cand, tuple(pred.shape))
            if image is not None:
                break
    if len(pred.shape) == 2:
        return figs | {
            "overlay_0.png": plots.overlay(
                None if image is None else np.asarray(image),
                np.asarray(truth),
                np.asarray(pred),
                0,
                params.get("ignore_index"),
                classes=list(result["per_class"]),
            )
        }
    for z in plots.overlay_slices(result["z_ranges"], int(params.get("overlays", 3))):
        img = None if image is None else np.asarray(image[z])
        figs[f"overlay_z{z:04d}.png"] = plots.overlay(
            img,
            np.asarray(truth[z]),
            np.asarray(pred[z]),
            z,
            params.get("ignore_index"),
            classes=list(result["per_class"]),
        )
    return figs


def _group_image(path: Any, shape: tuple[int, ...]) -> Any:
    """Level ``0`` of the OME-Zarr group holding ``path`` (the group itself or, for a path
    inside it such as ``VOL.zarr/labels/phases/0``, its ``.zarr`` root) if of ``shape`` and
    grey (not the label values at the root of ``PRED.zarr``, :func:`ngff.holds_labels`)."""
    import warnings

    import zarr

    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") or not path.is_dir():
        return None
    candidates = [path, *[p for p in list(path.parents)[:4] if p.suffix == ".zarr"][:1]]
    for cand in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                node = zarr.open(str(cand), mode="r")
                grey = isinstance(node, zarr.Group) and not ngff.holds_labels(dict(node.attrs))
                arr = node["0"] if grey and "0" in node else None
        except Exception:
            continue
        if arr is not None and isinstance(arr, zarr.Array) and tuple(arr.shape) == shape:
            return arr
    return None
