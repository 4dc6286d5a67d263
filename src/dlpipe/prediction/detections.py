"""Detection merging across tiles and painting into instance images (Mask R-CNN output).

Public API
----------
Detection
    One detected object in image coordinates (a mask crop, its score, its tile).
crop_to_content
    A detection from a tile's mask, cropped to its pixels.
same_object
    Whether two detections from different tiles are one object cut by a tile border.
merge_detections
    One detection per object across the tiles of an image, then mask NMS.
paint_instances
    Instance and class label images plus the per-instance rows.
MERGE_RULES
    The rules of :func:`same_object`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlpipe.errors import UserError

__all__ = [
    "MERGE_RULES",
    "Detection",
    "crop_to_content",
    "merge_detections",
    "paint_instances",
    "same_object",
]

MERGE_RULES = ("iou", "overlap_min")


@dataclass
class Detection:
    """One detected object in image coordinates.

    ``mask`` is a bool (h, w) crop whose pixel (0, 0) is image pixel (``y0``, ``x0``);
    ``tile`` the valid (unpadded) region of the tile it came from, (y0, x0, y1, x1) half-open.
    """

    label: int
    score: float
    y0: int
    x0: int
    mask: np.ndarray
    tile: tuple[int, int, int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), half-open, of the mask crop."""
        h, w = self.mask.shape
        return (self.y0, self.x0, self.y0 + h, self.x0 + w)

    @property
    def area(self) -> int:
        """Pixels of the mask."""
        return int(self.mask.sum())


def crop_to_content(
    label: int, score: float, y0: int, x0: int, mask: np.ndarray, tile: tuple[int, int, int, int]
) -> Detection | None:
    """The detection of ``mask`` (placed at ``y0``, ``x0``) cropped to its pixels; None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Detection(
        int(label),
        float(score),
        int(y0 + r0),
        int(x0 + c0),
        np.ascontiguousarray(mask[r0:r1, c0:c1]),
        tile,
    )


def _window(d: Detection, box: tuple[int, int, int, int]) -> np.ndarray:
    """``d.mask`` read over ``box`` (y0, x0, y1, x1) in image coordinates (False outside)."""
    y0, x0, y1, x1 = box
    out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
    dy0, dx0, dy1, dx1 = d.box
    a0, b0, a1, b1 = max(y0, dy0), max(x0, dx0), min(y1, dy1), min(x1, dx1)
    if a1 > a0 and b1 > b0:
        out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = d.mask[a0 - dy0 : a1 - dy0, b0 - dx0 : b1 - dx0]
    return out


def _intersect(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int] | None:
    y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def _union_box(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def same_object(a: Detection, b: Detection, *, rule: str = "iou", threshold: float = 0.5) -> bool:
    """Whether two detections from different tiles are one object cut by a tile border.

    In the region both tiles see (the intersection of their valid regions), the two masks
    must agree: ``iou`` = |A∩B| / |A∪B| or ``overlap_min`` = |A∩B| / min(|A|, |B|), with A
    and B restricted to that region, must exceed ``threshold``. Same class required;
    detections of one tile are never merged by this rule (NMS handles them).
    """
    if a.label != b.label or a.tile == b.tile:
        return False
    shared = _intersect(a.tile, b.tile)
    if shared is None:
        return False
    ra, rb = _intersect(a.box, shared), _intersect(b.box, shared)
    if ra is None or rb is None or _intersect(ra, rb) is None:
        return False  # a mask empty in the shared region, or no common pixel possible
    win = _union_box(ra, rb)  # both masks restricted to the shared region lie in here
    ma, mb = _window(a, win), _window(b, win)
    na, nb = int(ma.sum()), int(mb.sum())
    if not na or not nb:
        return False
    inter = int(np.count_nonzero(ma & mb))
    if rule == "iou":
        return inter / (na + nb - inter) > threshold
    return inter / min(na, nb) > threshold


def _mask_iou(a: Detection, b: Detection) -> float:
    if _intersect(a.box, b.box) is None:
        return 0.0
    box = _union_box(a.box, b.box)
    ma, mb = _window(a, box), _window(b, box)
    inter = int(np.count_nonzero(ma & mb))
    return inter / (a.area + b.area - inter)


def merge_detections(
    detections: Sequence[Detection],
    *,
    rule: str = "iou",
    threshold: float = 0.5,
    nms_iou: float = 0.5,
) -> list[Detection]:
    """Merge the detections of all tiles of one image into one detection per object.

    1. Detections of different tiles that :func:`same_object` pairs (in the overlap of
       their tiles, same class, masks agreeing above ``threshold``) are joined, transitively
       (an object over four tiles becomes one): the union of their masks, the maximum score.
    2. Non-maximum suppression on mask IoU: in decreasing score order, a detection whose
       full-mask IoU with a kept detection of the same class exceeds ``nms_iou`` is dropped.

    Returns
    -------
    list of Detection
        In decreasing score order; ``tile`` of a merged detection is the union of its tiles'.
    """
    if rule not in MERGE_RULES:
        raise UserError(f"unknown merge rule {rule!r} ({', '.join(MERGE_RULES)})")
    n = len(detections)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        boxes = np.array([d.box for d in detections])
        labels = np.array([d.label for d in detections])
        tiles = np.array([d.tile for d in detections])
        for i in range(n):
            j = np.arange(i + 1, n)
            cand = j[
                (labels[j] == labels[i])
                & (boxes[j, 0] < boxes[i, 2])
                & (boxes[j, 2] > boxes[i, 0])
                & (boxes[j, 1] < boxes[i, 3])
                & (boxes[j, 3] > boxes[i, 1])
                & np.any(tiles[j] != tiles[i], axis=1)
            ]
            for k in cand:
                if find(i) != find(int(k)) and same_object(
                    detections[i], detections[int(k)], rule=rule, threshold=threshold
                ):
                    parent[find(int(k))] = find(i)
    groups: dict[int, list[Detection]] = {}
    for i, d in enumerate(detections):
        groups.setdefault(find(i), []).append(d)
    merged = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        box = members[0].box
        tile = members[0].tile
        for m in members[1:]:
            box, tile = _union_box(box, m.box), _union_box(tile, m.tile)
        mask = np.zeros((box[2] - box[0], box[3] - box[1]), dtype=bool)
        for m in members:
            mask |= _window(m, box)
        merged.append(
            Detection(members[0].label, max(m.score for m in members), box[0], box[1], mask, tile)
        )
    merged.sort(key=lambda d: -d.score)
    kept: list[Detection] = []
    kboxes = np.zeros((len(merged), 4), dtype=np.int64)
    klabels = np.zeros(len(merged), dtype=np.int64)
    for d in merged:
        n_kept = len(kept)
        b = d.box
        near = np.flatnonzero(
            (klabels[:n_kept] == d.label)
            & (kboxes[:n_kept, 0] < b[2])
            & (kboxes[:n_kept, 2] > b[0])
            & (kboxes[:n_kept, 1] < b[3])
            & (kboxes[:n_kept, 3] > b[1])
        )
        if all(_mask_iou(kept[k], d) <= nms_iou for k in near):
            kboxes[n_kept], klabels[n_kept] = b, d.label
            kept.append(d)
    return kept


def paint_instances(
    detections: Sequence[Detection], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Paint detections into an instance image, lowest score first (highest on top).

    Parameters
    ----------
    detections : merged detections of one image
    shape : (y, x) of the image

    Returns
    -------
    instances : (y, x) uint32, ids 1..K in decreasing score order (1 = highest score); a
        detection wholly covered by higher-scored ones is dropped
    semantic : (y, x) uint8, the class of each pixel's instance (0 background)
    rows : per instance {instance_id, class_id, score, x1, y1, x2, y2, area} from the painted
        pixels (box in pixel edges: x2, y2 exclusive)
    """
    order = sorted(range(len(detections)), key=lambda i: (detections[i].score, -i))
    provisional = np.zeros(shape, dtype=np.uint32)
    for rank, i in enumerate(order, start=1):
        d = detections[i]
        y1, x1 = min(d.box[2], shape[0]), min(d.box[3], shape[1])
        m = d.mask[: y1 - d.y0, : x1 - d.x0]
        provisional[d.y0 : y1, d.x0 : x1][m] = rank
    from scipy import ndimage  # heavy: imported when painting, not by dlpipe.prediction

    slices = ndimage.find_objects(provisional)
    alive = [r for r in range(len(order), 0, -1) if slices[r - 1] is not None]  # best first
    lut = np.zeros(len(order) + 1, dtype=np.uint32)
    lut[alive] = np.arange(1, len(alive) + 1, dtype=np.uint32)
    instances = lut[provisional]
    cls = np.zeros(len(order) + 1, dtype=np.uint8)
    cls[alive] = [detections[order[r - 1]].label for r in alive]
    semantic = cls[provisional]
    areas = np.bincount(provisional.ravel(), minlength=len(order) + 1)
    rows = []
    for new_id, r in enumerate(alive, start=1):
        d = detections[order[r - 1]]
        sy, sx = slices[r - 1]
        rows.append(
            {
                "instance_id": new_id,
                "class_id": int(d.label),
                "score": float(d.score),
                "x1": int(sx.start),
                "y1": int(sy.start),
                "x2": int(sx.stop),
                "y2": int(sy.stop),
                "area": int(areas[r]),
            }
        )
    return instances, semantic, rows
