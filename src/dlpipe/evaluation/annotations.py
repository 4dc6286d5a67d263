"""The annotation score: a prediction scored on the held-out annotated slices of the volume.

Most scans have no dense ground truth, only a few annotated slices placed in the volume
(``dlpipe cvat EXPORT --volume VOL.zarr``). Training holds out some of them as *test*
slices (:func:`dlpipe.stores.annotations.split_slices`, recorded as
``dlpipe.annotations.test``) and never sees them; this score compares ``PRED.zarr`` with
``VOL.zarr/labels/annotations`` on those slices only, skipping the not-annotated voxels
(255). Only the test slices are read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.evaluation import plots
from dlpipe.evaluation.metrics import scores
from dlpipe.results import StageResult
from dlpipe.stores.annotations import (
    AXES,
    NOT_ANNOTATED,
    SliceSet,
    annotation_record,
    read_plane,
    test_slices,
)
from dlpipe.stores.volume import open_labels

log = logging.getLogger(__name__)

__all__ = ["annotation_confusion", "annotation_score", "has_annotations"]


def has_annotations(truth_path: str | Path, labels_name: str) -> bool:
    """Whether ``truth_path`` is a volume with placed annotations and no label image
    ``labels_name`` (then ``dlpipe evaluate`` gives the annotation score)."""
    path = Path(truth_path)
    return (
        path.is_dir()
        and not (path / "labels" / labels_name).exists()
        and annotation_record(path) is not None
    )


def annotation_confusion(
    pred: Any, annotations: Any, slices: SliceSet, n_classes: int
) -> np.ndarray:
    """(C, C) int64 confusion matrix (rows annotation, columns prediction) over ``slices``.

    Parameters
    ----------
    pred, annotations : (z, y, x) label arrays of the same shape (read slice by slice)
    slices : {axis: [index, ...]}; a voxel on two of them (where they cross) counts once
    n_classes : C; annotation values >= C other than 255 are an error
    """
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    done: list[tuple[str, int]] = []
    for axis in AXES:
        for index in slices.get(axis, []):
            truth = read_plane(annotations, axis, int(index)).astype(np.int64)
            guess = read_plane(pred, axis, int(index)).astype(np.int64)
            valid = truth != NOT_ANNOTATED
            for other, j in done:  # the line shared with a slice already counted
                if other != axis:
                    rest = [a for a in AXES if a != axis]
                    line = [slice(None), slice(None)]
                    line[rest.index(other)] = j
                    valid[tuple(line)] = False
            bad = valid & (truth >= n_classes)
            if bad.any():
                raise UserError(
                    f"annotation value {int(truth[bad][0])} on {axis}-slice {index} is not "
                    f"one of the {n_classes} classes"
                )
            if (guess[valid] >= n_classes).any():
                raise UserError(
                    f"predicted value {int(guess[valid].max())} on {axis}-slice {index} is not "
                    f"one of the {n_classes} classes"
                )
            cm += np.bincount(
                truth[valid] * n_classes + guess[valid], minlength=n_classes * n_classes
            ).reshape(n_classes, n_classes)
            done.append((axis, int(index)))
    return cm


def annotation_score(
    pred_path: str | Path,
    volume_path: str | Path,
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Scores of ``PRED.zarr`` on the test slices of ``VOL.zarr``'s placed annotations.

    Parameters
    ----------
    pred_path : the prediction (``labels/<labels_name>/0`` of an OME-Zarr, a Zarr array, TIFF)
    volume_path : ``VOL.zarr`` with ``labels/annotations/0`` and ``dlpipe.annotations``
    params : the ``evaluation`` section (``classes``, ``labels_name``, ``overlays``)

    Returns
    -------
    result : the :func:`~dlpipe.evaluation.metrics.scores` dict plus ``kind`` ("annotation
        score"), ``test_slices``, ``prediction``, ``truth``
    figures : name -> matplotlib figure (Jaccard bars, confusion, overlays of test slices)
    """
    record = annotation_record(volume_path)
    if record is None:
        raise UserError(
            "no annotations placed in the volume (dlpipe.annotations)", path=volume_path
        )
    test = test_slices(record)
    if not any(test.values()):
        raise UserError(
            "no held-out test slice among the annotated slices (annotate at least 2 slices)",
            path=volume_path,
        )
    pred = open_labels(pred_path, labels_name=params.get("labels_name", "phases"))
    ann = open_labels(volume_path, labels_name=str(record.get("name", "annotations")))
    if tuple(pred.shape) != tuple(ann.shape):
        raise UserError(
            f"prediction shape {tuple(pred.shape)} differs from the volume's {tuple(ann.shape)}",
            path=pred_path,
        )
    classes = list(params.get("classes") or record.get("classes") or [])
    n = max(len(classes), 2)
    cm = annotation_confusion(pred, ann, test, n)
    result = scores(cm, classes or None)
    result.update(
        kind="annotation score",
        test_slices=test,
        z_source="annotated test slices",
        prediction=str(pred_path),
        truth=str(Path(volume_path) / "labels" / str(record.get("name", "annotations"))),
    )
    log.info(
        "annotation score on the test slices %s: mean Jaccard %.3f", test, result["mean_jaccard"]
    )
    figures = {
        "jaccard.png": plots.jaccard_bars(result),
        "confusion.png": plots.confusion_heatmap(result),
    }
    image = open_labels(volume_path, image=True)
    shown = [(a, i) for a in AXES for i in test.get(a, [])][: int(params.get("overlays", 3))]
    for axis, index in shown:
        fig = plots.overlay(
            read_plane(image, axis, index),
            read_plane(ann, axis, index),
            read_plane(pred, axis, index),
            index,
            NOT_ANNOTATED,
        )
        fig.axes[0].set_title(f"image {axis}={index}")
        figures[f"overlay_{axis}{index:04d}.png"] = fig
    return result, figures


def score_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The metrics to log: means, accuracy and per-class scores (NaN left out)."""
    out = {
        "mean_jaccard": result["mean_jaccard"],
        "mean_dice": result["mean_dice"],
        "accuracy": result["accuracy"],
    }
    for cname, m in result["per_class"].items():
        for k in ("jaccard", "dice", "precision", "recall"):
            out[f"{k}_{cname}"] = m[k]
    return {k: float(v) for k, v in out.items() if not math.isnan(v)}


def annotation_result(result: dict[str, Any], artifacts: list[Any]) -> StageResult:
    """The stage result of the annotation score."""
    return StageResult(
        result,
        metrics=score_metrics(result),
        artifacts=artifacts,
        summary=f"annotation score (held-out annotated slices {result['test_slices']}): "
        f"mean Jaccard {result['mean_jaccard']:.3f}",
    )
