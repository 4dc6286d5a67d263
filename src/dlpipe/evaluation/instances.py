"""Instance metrics: COCO-style matching by mask IoU, precision/recall/F1, AP@[.50:.95].

Conventions (documented in docs/instances.md)
---------------------------------------------
* Instances are the non-zero ids of a label image (one image or slice at a time, (y, x)
  uint32); masks therefore do not overlap. The class of an instance is the majority class
  of its pixels in the semantic map, unless given (the prediction's table).
* Matching (per image, per class, COCO rules): predictions in decreasing score order each
  take the still unmatched true instance of the same class with the highest IoU, if that
  IoU is >= the threshold; ties in score keep the input order (stable sort). One-to-one.
* Precision, recall and F1 at IoU 0.5 from the counts summed over images: precision =
  matched / predicted, recall = matched / true, F1 = 2 matched / (predicted + true). A ratio
  whose denominator is 0 is NaN (JSON null): no prediction -> precision NaN, recall 0,
  F1 0; no truth -> recall NaN, precision 0, F1 0; neither -> all NaN.
* AP (per class, per IoU threshold): predictions of all images pooled and sorted by score,
  cumulative precision/recall, precision made monotone (the envelope), read at the 101
  recall points 0, 0.01, ..., 1 (0 past the largest recall reached) and averaged, exactly as
  pycocotools' ``COCOeval.accumulate``. AP = mean over IoU 0.50:0.05:0.95; AP50, AP75 at one
  threshold. A class without true instances has AP NaN (COCO's -1) and is left out of the
  mean over classes; a class with true instances and no predictions has AP 0.
* Overall: counts summed over classes (micro precision/recall/F1); AP, AP50, AP75 = mean of
  the per-class values that are defined (COCO's mAP).
* Panoptic quality, count error and the size distance (Wasserstein-1 of equivalent
  diameters): :mod:`dlpipe.evaluation.instance_scores`, per class and overall.

Matching, IoU and AP live in :mod:`dlpipe.evaluation.instance_matching` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlpipe.evaluation import instance_scores as scores_
from dlpipe.evaluation.instance_matching import (
    IOU_THRESHOLDS,
    RECALL_POINTS,
    average_precision,
    instance_classes,
    iou_from_overlaps,
    match_detections,
    pair_iou,
    pair_overlaps,
)

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_POINTS",
    "InstanceEvaluator",
    "average_precision",
    "evaluate_instance_images",
    "instance_classes",
    "iou_from_overlaps",
    "match_detections",
    "pair_iou",
    "pair_overlaps",
]


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


@dataclass
class _ClassAcc:
    scores: list[float] = field(default_factory=list)
    matched: list[np.ndarray] = field(default_factory=list)  # (T,) bool per prediction
    ious: list[float] = field(default_factory=list)  # IoU of the matches at 0.5
    n_true: int = 0
    pq_tp: int = 0  # matches at IoU > 0.5 (panoptic quality)
    pq_iou: float = 0.0  # their summed IoU
    pred_sizes: list[float] = field(default_factory=list)  # pixels / voxels per object
    true_sizes: list[float] = field(default_factory=list)


@dataclass
class InstanceEvaluator:
    """Accumulates images and returns the metrics of them all (:meth:`result`).

    ``classes`` are the class names by id (``classes[0]`` the background, not scored);
    ``ndim`` (2 for images, 3 for volumes) and ``spacing`` (pixel or voxel size per axis,
    None for pixel units) set the equivalent diameters of the size distance.
    """

    classes: Sequence[str]
    thresholds: Sequence[float] = field(default_factory=lambda: list(IOU_THRESHOLDS))
    f1_iou: float = 0.5
    ndim: int = 2
    spacing: Sequence[float] | None = None
    _acc: dict[int, _ClassAcc] = field(default_factory=dict)
    n_images: int = 0

    def add_image(
        self,
        pred: np.ndarray,
        true: np.ndarray,
        true_classes: Mapping[int, int],
        pred_classes: Mapping[int, int],
        pred_scores: Mapping[int, float] | None = None,
    ) -> None:
        """Add one image.

        Parameters
        ----------
        pred, true : (y, x) instance label images (0 background)
        true_classes, pred_classes : class id of each non-zero instance id
        pred_scores : score of each predicted id (default 1 for all: ties keep id order)
        """
        p_ids, t_ids, inter, pa, ta = pair_overlaps(pred, true)
        self.add_pairs(p_ids, t_ids, inter, pa, ta, true_classes, pred_classes, pred_scores)

    def add_pairs(
        self,
        p_ids: np.ndarray,
        t_ids: np.ndarray,
        inter: np.ndarray,
        p_area: np.ndarray,
        t_area: np.ndarray,
        true_classes: Mapping[int, int],
        pred_classes: Mapping[int, int],
        pred_scores: Mapping[int, float] | None = None,
    ) -> None:
        """Add one image (or volume) from its overlaps (:func:`pair_overlaps`)."""
        self.n_images += 1
        thr = [*self.thresholds, self.f1_iou]
        iou = iou_from_overlaps(inter, p_area, t_area)
        pc = np.array([int(pred_classes[int(i)]) for i in p_ids], dtype=np.int64)
        tc = np.array([int(true_classes[int(i)]) for i in t_ids], dtype=np.int64)
        sc = np.array([1.0 if pred_scores is None else float(pred_scores[int(i)]) for i in p_ids])
        for c in sorted(set(pc.tolist()) | set(tc.tolist())):
            if c == 0:
                continue
            acc = self._acc.setdefault(c, _ClassAcc())
            dp, dt = np.flatnonzero(pc == c), np.flatnonzero(tc == c)
            acc.n_true += len(dt)
            acc.pred_sizes.extend(np.asarray(p_area)[dp].tolist())
            acc.true_sizes.extend(np.asarray(t_area)[dt].tolist())
            if not len(dp):
                continue
            sub = iou[np.ix_(dp, dt)]
            tp, total = scores_.panoptic_counts(sub)
            acc.pq_tp += tp
            acc.pq_iou += total
            m = match_detections(sub, sc[dp], thr)
            acc.scores.extend(sc[dp].tolist())
            acc.matched.extend(list((m >= 0).T))
            hit = m[-1]
            acc.ious.extend(sub[i, g] for i, g in enumerate(hit) if g >= 0)

    def diameters(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{class name: (predicted, true) equivalent diameters} of the classes seen."""
        out = {}
        for c, acc in sorted(self._acc.items()):
            name = self.classes[c] if c < len(self.classes) else f"class_{c}"
            out[name] = tuple(
                scores_.equivalent_diameters(s, self.ndim, self.spacing)
                for s in (acc.pred_sizes, acc.true_sizes)
            )
        return out

    def _class_metrics(self, acc: _ClassAcc) -> dict[str, Any]:
        n_t = len(self.thresholds)
        matched = np.array(acc.matched, dtype=bool).reshape(-1, n_t + 1)
        n_pred, n_true = len(acc.scores), acc.n_true
        n_match = int(matched[:, -1].sum())
        aps = [average_precision(acc.scores, matched[:, k], n_true) for k in range(n_t)]

        def at(t: float) -> float:
            k = [i for i, v in enumerate(self.thresholds) if abs(v - t) < 1e-9]
            if k:
                return aps[k[0]]
            return math.nan

        return {
            "n_true": n_true,
            "n_pred": n_pred,
            "n_matched": n_match,
            "precision": _ratio(n_match, n_pred),
            "recall": _ratio(n_match, n_true),
            "f1": _ratio(2 * n_match, n_pred + n_true),
            "ap": math.nan if n_true == 0 else float(np.mean(aps)),
            "ap50": at(0.5),
            "ap75": at(0.75),
            "mean_matched_iou": float(np.mean(acc.ious)) if acc.ious else math.nan,
            **self._count_size(acc, n_pred),
        }

    def _count_size(self, acc: _ClassAcc, n_pred: int) -> dict[str, float]:
        """PQ/SQ/RQ, count error and size distance of one class."""
        pq = scores_.panoptic_quality(
            acc.pq_tp, n_pred - acc.pq_tp, acc.n_true - acc.pq_tp, acc.pq_iou
        )
        dp = scores_.equivalent_diameters(acc.pred_sizes, self.ndim, self.spacing)
        dt = scores_.equivalent_diameters(acc.true_sizes, self.ndim, self.spacing)
        return {
            **pq,
            **scores_.count_error(n_pred, acc.n_true),
            "size_w1": scores_.size_distance(dp, dt),
            "mean_diameter_pred": float(dp.mean()) if dp.size else math.nan,
            "mean_diameter_true": float(dt.mean()) if dt.size else math.nan,
        }

    def result(self) -> dict[str, Any]:
        """Metrics per class (every class of ``classes`` but the background) and overall."""
        per_class = {}
        for c, name in enumerate(self.classes):
            if c == 0:
                continue
            per_class[name] = self._class_metrics(self._acc.get(c, _ClassAcc()))
        extra = sorted(c for c in self._acc if c >= len(self.classes))
        for c in extra:
            per_class[f"class_{c}"] = self._class_metrics(self._acc[c])
        tot = {k: sum(v[k] for v in per_class.values()) for k in ("n_true", "n_pred", "n_matched")}

        def mean(key: str) -> float:
            vals = [v[key] for v in per_class.values() if not math.isnan(v[key])]
            return float(np.mean(vals)) if vals else math.nan

        overall = tot | {
            "precision": _ratio(tot["n_matched"], tot["n_pred"]),
            "recall": _ratio(tot["n_matched"], tot["n_true"]),
            "f1": _ratio(2 * tot["n_matched"], tot["n_pred"] + tot["n_true"]),
            "ap": mean("ap"),
            "ap50": mean("ap50"),
            "ap75": mean("ap75"),
            "pq": mean("pq"),
            "sq": mean("sq"),
            "rq": mean("rq"),
        }
        every = _ClassAcc()
        for acc in self._acc.values():
            every.n_true += acc.n_true
            every.pred_sizes += acc.pred_sizes
            every.true_sizes += acc.true_sizes
        pooled = self._count_size(every, len(every.pred_sizes))
        overall |= {k: pooled[k] for k in pooled if k not in ("pq", "sq", "rq")}
        return {
            "classes": list(per_class),
            "iou_thresholds": [float(t) for t in self.thresholds],
            "f1_iou": float(self.f1_iou),
            "images": self.n_images,
            "size_unit": "pixel" if self.spacing is None else "physical",
            "per_class": per_class,
            "overall": overall,
        }


def evaluate_instance_images(
    items: Iterable[
        tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Mapping[int, float] | None]
    ],
    classes: Sequence[str],
    *,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
    f1_iou: float = 0.5,
) -> dict[str, Any]:
    """Instance metrics of several images from label images alone.

    Parameters
    ----------
    items : per image ``(pred_instances, pred_semantic, true_instances, true_semantic,
        pred_scores)``, the arrays (y, x); classes of instances are their majority class in
        the semantic maps; ``pred_scores`` maps predicted ids to scores (None: all 1)
    classes : class names by id, ``classes[0]`` the background

    Returns
    -------
    dict
        ``per_class`` {name: {n_true, n_pred, n_matched, precision, recall, f1, ap, ap50,
        ap75, mean_matched_iou}}, ``overall`` (the same keys but mean_matched_iou),
        ``classes``, ``iou_thresholds``, ``f1_iou``, ``images``.
    """
    ev = InstanceEvaluator(classes, list(thresholds), f1_iou)
    for p_inst, p_sem, t_inst, t_sem, p_scores in items:
        ev.add_image(
            p_inst,
            t_inst,
            instance_classes(t_inst, t_sem),
            instance_classes(p_inst, p_sem),
            p_scores,
        )
    return ev.result()
