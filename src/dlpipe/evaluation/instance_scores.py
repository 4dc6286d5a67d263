"""Counting and sizing scores of instances: panoptic quality, count error, size distance.

Conventions (docs/instances.md)
-------------------------------
* **Panoptic quality** (Kirillov et al. 2019), per class: a prediction and a true instance
  of the class match when their IoU is strictly above 0.5 (such matches are unique: two
  masks that do not overlap each other cannot both cover more than half of a third);
  TP = matches, FP = unmatched predictions, FN = unmatched true instances;
  ``SQ = sum(IoU of matches) / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``, ``PQ = SQ × RQ``.
  SQ is NaN without a match (PQ is then 0 when RQ is defined); all three are NaN when the
  class has neither predictions nor true instances. Overall PQ/SQ/RQ: the mean over the
  classes where they are defined (as the panoptic paper).
* **Count error**: ``(n_pred - n_true) / n_true`` (signed; > 0 = too many objects) and its
  absolute value; NaN when ``n_true`` is 0.
* **Size distance**: the Wasserstein-1 distance (``scipy.stats.wasserstein_distance``)
  between the equivalent diameters of the predicted and of the true objects: in 2D
  ``d = 2 sqrt(A / pi)``, in 3D ``d = (6 V / pi)^(1/3)``, A or V the object's pixel or
  voxel count times the pixel area / voxel volume (physical units when the pixel or voxel
  size is known, else pixels). NaN when either side has no object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "count_error",
    "equivalent_diameters",
    "panoptic_counts",
    "panoptic_quality",
    "size_distance",
]


def panoptic_counts(iou: np.ndarray) -> tuple[int, float]:
    """Matches at IoU > 0.5 of one image and one class: (TP, sum of their IoU).

    ``iou`` is (D, G), predictions by true instances. Pairs above 0.5 are unique per row
    and column for non-overlapping masks; should a caller pass overlapping masks, each row
    and column is still used once (greedy by IoU).
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size == 0:
        return 0, 0.0
    rows, cols = np.nonzero(iou > 0.5)
    if len(rows) == 0:
        return 0, 0.0
    vals = iou[rows, cols]
    order = np.argsort(-vals, kind="mergesort")
    used_r, used_c = set(), set()
    tp, total = 0, 0.0
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        tp += 1
        total += float(vals[k])
    return tp, total


def panoptic_quality(tp: int, fp: int, fn: int, iou_sum: float) -> dict[str, float]:
    """``{"pq", "sq", "rq"}`` from the counts (see the module's conventions)."""
    denom = tp + 0.5 * fp + 0.5 * fn
    if denom == 0:
        return {"pq": math.nan, "sq": math.nan, "rq": math.nan}
    rq = tp / denom
    sq = iou_sum / tp if tp else math.nan
    return {"pq": sq * rq if tp else 0.0, "sq": sq, "rq": rq}


def count_error(n_pred: int, n_true: int) -> dict[str, float]:
    """``{"count_error": |n_pred - n_true| / n_true, "count_error_signed": ...}``."""
    if n_true == 0:
        return {"count_error": math.nan, "count_error_signed": math.nan}
    signed = (n_pred - n_true) / n_true
    return {"count_error": abs(signed), "count_error_signed": signed}


def equivalent_diameters(
    sizes: Sequence[float] | np.ndarray, ndim: int, spacing: Sequence[float] | None = None
) -> np.ndarray:
    """Equivalent diameters of objects of ``sizes`` pixels (ndim 2) or voxels (ndim 3).

    ``spacing`` (one size per axis, or None for pixel units) turns counts into areas or
    volumes: ``size * prod(spacing)``.
    """
    s = np.asarray(sizes, dtype=np.float64)
    if spacing is not None:
        s = s * float(np.prod(np.asarray(spacing, dtype=np.float64)))
    if ndim == 2:
        return 2.0 * np.sqrt(s / math.pi)
    if ndim == 3:
        return np.cbrt(6.0 * s / math.pi)
    raise ValueError(f"ndim must be 2 or 3, not {ndim}")


def size_distance(pred_diameters: np.ndarray, true_diameters: np.ndarray) -> float:
    """Wasserstein-1 distance of two diameter samples (NaN when either is empty)."""
    from scipy.stats import wasserstein_distance  # deferred: heavy

    p, t = np.asarray(pred_diameters, float), np.asarray(true_diameters, float)
    if p.size == 0 or t.size == 0:
        return math.nan
    return float(wasserstein_distance(p, t))
