"""One frame's shapes to a semantic map, an instance map and a table of objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dlpipe.annotations._model import AREA_KINDS, LINE_KINDS, Frame, Shape
from dlpipe.annotations._parse import Counts
from dlpipe.annotations._raster import (
    box_corners,
    ellipse_spans,
    line_spans,
    mask_spans,
    paint,
    polygon_spans,
)
from dlpipe.errors import UserError


@dataclass(frozen=True)
class DrawOptions:
    """How to treat line-like shapes: 0 ignores them (the default)."""

    polyline_width: float = 0.0
    points_radius: float = 0.0


def _extent(shape: Shape) -> tuple[float, float, float, float]:
    if shape.kind == "ellipse":
        cx, cy, rx, ry = shape.params
        t = np.deg2rad(shape.rotation)
        hw = float(np.hypot(rx * np.cos(t), ry * np.sin(t)))
        hh = float(np.hypot(rx * np.sin(t), ry * np.cos(t)))
        return cx - hw, cy - hh, cx + hw, cy + hh
    if shape.kind == "box":
        p = box_corners(*shape.params, shape.rotation)
    elif shape.kind == "mask":
        assert shape.mask is not None
        h, w = shape.mask.shape
        return shape.left, shape.top, shape.left + w, shape.top + h
    else:
        assert shape.points is not None
        p = shape.points
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def _clipped(polys: list[np.ndarray], ell: np.ndarray, height: int, width: int) -> int:
    """How many polygons (boxes included) and ellipses reach outside the image."""
    n = 0
    if polys:
        lengths = np.fromiter((len(p) for p in polys), np.int64, len(polys))
        allp = np.concatenate(polys)
        starts = np.cumsum(lengths) - lengths
        lo = np.minimum.reduceat(allp, starts, axis=0)
        hi = np.maximum.reduceat(allp, starts, axis=0)
        n += int(((lo < 0).any(axis=1) | (hi[:, 0] > width) | (hi[:, 1] > height)).sum())
    if len(ell):
        cx, cy, rx, ry, rot = ell.T
        t = np.deg2rad(rot)
        hw, hh = np.hypot(rx * np.cos(t), ry * np.sin(t)), np.hypot(rx * np.sin(t), ry * np.cos(t))
        n += int(((cx - hw < 0) | (cy - hh < 0) | (cx + hw > width) | (cy + hh > height)).sum())
    return n


def rasterise_frame(
    frame: Frame,
    class_of: Mapping[str, int | None],
    height: int,
    width: int,
    *,
    counts: Counts | None = None,
    draw: DrawOptions = DrawOptions(),
    unknown: str = "error",
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Paint a frame's shapes in z_order (higher on top, ties by document order).

    Parameters
    ----------
    frame : the parsed frame
    class_of : label -> class id (>= 1), or None to drop shapes of that label
    height, width : output size (shapes are clipped to it)
    counts : tallies to update (clipped, empty, ignored, unknown labels, tags)
    draw : whether and how to draw polylines and points
    unknown : "error" or "skip" for labels missing from ``class_of``

    Returns
    -------
    semantic : (height, width) uint8, 0 background
    instances : (height, width) uint32, 0 background, 1..K one id per painted object
    objects : one dict per painted object (and per tag) with instance_id, label,
        class_id, x1, y1, x2, y2 (visible pixels, x2/y2 exclusive), area (visible pixels),
        kind, occluded, z_order, group_id, source, track_id, attributes
    """
    counts = counts if counts is not None else Counts()
    painted: list[Shape] = []
    classes: list[int] = []
    objects: list[dict] = []
    z: list[int] = []
    doc: list[int] = []
    parts = []
    polys, poly_ids, ell, ell_ids = [], [], [], []
    for shape in frame.shapes:
        kind = shape.kind
        if kind == "tag":
            counts.tags += 1
            objects.append(_row(shape, 0, 0, None, 0))
            continue
        if kind in LINE_KINDS:
            size = draw.polyline_width / 2 if kind == "polyline" else draw.points_radius
            if size <= 0:
                counts.bump(counts.ignored, kind)
                continue
        elif kind not in AREA_KINDS:
            continue
        cls = class_of.get(shape.label, -1)
        if cls == -1:
            if unknown == "skip":
                counts.unknown_label += 1
                continue
            raise UserError(
                f"image {frame.name!r}: label {shape.label!r} is not one of the classes "
                f"{sorted(k for k in class_of if class_of[k] is not None)} "
                "(add it to --classes or map it in cvat.label_map)"
            )
        if cls is None:
            counts.unknown_label += 1
            continue
        k = len(painted)
        if kind == "polygon":
            polys.append(shape.points)
            poly_ids.append(k)
        elif kind == "ellipse":
            ell.append((*shape.params, shape.rotation))
            ell_ids.append(k)
        elif kind == "box":
            polys.append(box_corners(*shape.params, shape.rotation))
            poly_ids.append(k)
        else:  # mask, drawn polyline or points (rare): one by one
            x0, y0, x1, y1 = _extent(shape)
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                counts.clipped += 1
            assert shape.points is not None or shape.mask is not None
            if kind == "mask":
                parts.append(mask_spans(shape, k, height, width))
            elif kind == "polyline":
                parts.append(
                    line_spans(
                        shape.points,
                        draw.polyline_width / 2,
                        False,
                        k,
                        height,
                        width,
                        segments=True,
                    )
                )
            else:
                parts.append(
                    line_spans(
                        shape.points, draw.points_radius, False, k, height, width, segments=False
                    )
                )
        painted.append(shape)
        classes.append(int(cls))
        z.append(shape.z_order)
        doc.append(shape.order)

    ell_arr = np.array(ell, np.float64).reshape(-1, 5)
    counts.clipped += _clipped(polys, ell_arr, height, width)
    parts.append(polygon_spans(polys, np.array(poly_ids, np.int64), height, width))
    parts.append(ellipse_spans(ell_arr, np.array(ell_ids, np.int64), height, width))
    spans = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))

    # instance ids 1..K in document order among shapes that cover at least one pixel
    n = len(painted)
    covered = np.zeros(n, bool)
    covered[spans[0]] = True
    counts.empty += int(n - covered.sum())
    inst_of_shape = np.zeros(n, np.int64)
    inst_of_shape[covered] = np.arange(1, int(covered.sum()) + 1)
    # paint rank: by z_order, then document order
    ranks = np.zeros(n, np.int32)
    ranks[np.lexsort((np.array(doc, np.int64), np.array(z, np.int64)))] = np.arange(
        1, n + 1, dtype=np.int32
    )
    pix, pix_shape, rank_pix, winner = paint(spans, ranks, height, width)

    inst_of_rank = np.zeros(n + 1, np.uint32)
    inst_of_rank[ranks] = inst_of_shape
    cls_of_rank = np.zeros(n + 1, np.uint8)
    cls_of_rank[ranks] = np.array(classes, np.uint8).reshape(-1)
    instances = np.zeros(height * width, np.uint32)
    semantic = np.zeros(height * width, np.uint8)
    k_max = int(covered.sum())
    area = np.zeros(k_max + 1, np.int64)
    box = np.zeros((k_max + 1, 4), np.int64)
    if len(pix):
        instances[pix] = inst_of_rank[winner]
        semantic[pix] = cls_of_rank[winner]
        # visible pixels of each instance: area and box (x2, y2 exclusive)
        visible = winner == rank_pix
        vid = inst_of_shape[pix_shape[visible]]
        vpix = pix[visible]
        area = np.bincount(vid, minlength=k_max + 1)
        order = np.argsort(vid, kind="stable")
        vid, vpix = vid[order], vpix[order]
        rr, cc = np.divmod(vpix, width)
        present = np.flatnonzero(area)
        first = np.searchsorted(vid, present)
        box[present, 0] = np.minimum.reduceat(cc, first)
        box[present, 1] = np.minimum.reduceat(rr, first)
        box[present, 2] = np.maximum.reduceat(cc, first) + 1
        box[present, 3] = np.maximum.reduceat(rr, first) + 1
    semantic = semantic.reshape(height, width)
    instances = instances.reshape(height, width)
    for k, shape in enumerate(painted):
        i = int(inst_of_shape[k])
        if i == 0:
            continue
        b = box[i] if area[i] > 0 else np.zeros(4, np.int64)
        objects.append(_row(shape, i, classes[k], b, int(area[i])))
    return semantic, instances, objects


def _row(shape: Shape, instance: int, cls: int, box: np.ndarray | None, area: int) -> dict:
    b = [0, 0, 0, 0] if box is None else [int(v) for v in box]
    return {
        "instance_id": instance,
        "kind": shape.kind,
        "label": shape.label,
        "class_id": cls,
        "x1": b[0],
        "y1": b[1],
        "x2": b[2],
        "y2": b[3],
        "area": area,
        "occluded": int(shape.occluded),
        "z_order": shape.z_order,
        "group_id": shape.group_id,
        "source": shape.source,
        "track_id": shape.track_id,
        "attributes": shape.attributes,
    }
