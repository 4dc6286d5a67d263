"""Matching of instances by mask IoU and average precision (COCO rules).

The building blocks of :class:`dlpipe.evaluation.instances.InstanceEvaluator` (its module
text states the conventions): overlaps and IoU of the objects of two label images, one-to-one
matching of scored predictions, the 101-point AP, and the class of each instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_POINTS",
    "average_precision",
    "instance_classes",
    "iou_from_overlaps",
    "match_detections",
    "pair_iou",
    "pair_overlaps",
]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def match_detections(
    iou: np.ndarray, scores: Sequence[float], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> np.ndarray:
    """COCO greedy one-to-one matching of one image and one class.

    Parameters
    ----------
    iou : (D, G) float, IoU of each prediction (row) with each true instance (column)
    scores : (D,) prediction scores; higher is matched first (stable for ties)
    thresholds : (T,) IoU thresholds

    Returns
    -------
    numpy.ndarray
        int64 (T, D): the column matched by each prediction at each threshold, -1 if none.
    """
    iou = np.asarray(iou, dtype=np.float64).reshape(len(scores), -1)
    n_det, n_gt = iou.shape
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    out = np.full((len(thresholds), n_det), -1, dtype=np.int64)
    if n_gt == 0:
        return out
    for ti, t in enumerate(thresholds):
        taken = np.zeros(n_gt, dtype=bool)
        need = min(float(t), 1 - 1e-10)
        for d in order:
            row = np.where(taken, -1.0, iou[d])
            g = n_gt - 1 - int(np.argmax(row[::-1]))  # the last of equal bests, as COCO
            if row[g] >= need:
                taken[g] = True
                out[ti, d] = g
    return out


def average_precision(scores: Sequence[float], matched: Sequence[bool], n_true: int) -> float:
    """101-point interpolated average precision (pycocotools' rule) of pooled predictions.

    Parameters
    ----------
    scores : (D,) scores of every prediction of one class over all images
    matched : (D,) whether each prediction is a true positive (at one IoU threshold)
    n_true : number of true instances of the class over all images

    Returns
    -------
    float
        AP in [0, 1]; NaN when ``n_true`` is 0 (undefined).
    """
    if n_true == 0:
        return math.nan
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.asarray(matched, dtype=bool)[order]
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_true
    precision = tps / (tps + fps)  # >= 1 detection: no eps needed (COCO adds 2e-16)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(q.mean())


def pair_overlaps(
    pred: np.ndarray, true: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Overlap counts of every predicted with every true instance of one image or volume.

    Parameters
    ----------
    pred, true : integer instance label arrays (0 background) of one shape, any ndim

    Returns
    -------
    pred_ids, true_ids : (D,), (G,) the non-zero ids, ascending
    inter : (D, G) int64 pixel counts of the intersections
    pred_area, true_area : (D,), (G,) pixel counts of the instances
    """
    if pred.shape != true.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {true.shape}")
    p_ids, p_inv = np.unique(pred.ravel(), return_inverse=True)
    t_ids, t_inv = np.unique(true.ravel(), return_inverse=True)
    np_, nt = len(p_ids), len(t_ids)
    counts = np.bincount(p_inv * nt + t_inv, minlength=np_ * nt).reshape(np_, nt)
    pk, tk = p_ids != 0, t_ids != 0
    return (
        p_ids[pk],
        t_ids[tk],
        counts[np.ix_(pk, tk)].astype(np.int64),
        counts.sum(1)[pk].astype(np.int64),
        counts.sum(0)[tk].astype(np.int64),
    )


def iou_from_overlaps(inter: np.ndarray, p_area: np.ndarray, t_area: np.ndarray) -> np.ndarray:
    """(D, G) IoU from intersection counts and the instances' areas."""
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(p_area, np.float64)[:, None] + np.asarray(t_area, np.float64)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pair_iou(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every predicted instance with every true instance of one image.

    Parameters
    ----------
    pred, true : (y, x) integer instance label images (0 background), same shape

    Returns
    -------
    pred_ids : (D,) the non-zero ids of ``pred``, ascending
    true_ids : (G,) the non-zero ids of ``true``, ascending
    iou : (D, G) float64
    """
    p_ids, t_ids, inter, pa, ta = pair_overlaps(pred, true)
    return p_ids, t_ids, iou_from_overlaps(inter, pa, ta)


def instance_classes(instances: np.ndarray, semantic: np.ndarray) -> dict[int, int]:
    """Majority class (from ``semantic``) of each non-zero id of ``instances``, (y, x) each."""
    ids, inv = np.unique(instances.ravel(), return_inverse=True)
    sem = semantic.ravel().astype(np.int64)
    nc = int(sem.max(initial=0)) + 1
    counts = np.bincount(inv * nc + sem, minlength=len(ids) * nc).reshape(len(ids), nc)
    return {int(i): int(np.argmax(c)) for i, c in zip(ids, counts, strict=True) if i != 0}
