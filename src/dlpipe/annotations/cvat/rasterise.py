"""One frame's shapes to a semantic map, an instance map and a table of objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dlpipe.annotations.cvat._model import (
    AREA_KINDS,
    COLUMN_KINDS,
    LINE_KINDS,
    Counts,
    Frame,
    Shape,
    ShapeColumns,
)
from dlpipe.annotations.cvat._raster import (
    Spans,
    box_corners,
    boxes_corners,
    ellipse_spans,
    flat_polygon_spans,
    line_spans,
    mask_spans,
    paint,
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


def _clipped(
    points: np.ndarray, lengths: np.ndarray, ell: np.ndarray, height: int, width: int
) -> int:
    """How many polygons (boxes included, as flat vertices) and ellipses reach outside."""
    n = 0
    if len(lengths):
        starts = np.cumsum(lengths) - lengths
        lo = np.minimum.reduceat(points, starts, axis=0)
        hi = np.maximum.reduceat(points, starts, axis=0)
        n += int(((lo < 0).any(axis=1) | (hi[:, 0] > width) | (hi[:, 1] > height)).sum())
    if len(ell):
        cx, cy, rx, ry, rot = ell.T
        t = np.deg2rad(rot)
        hw, hh = np.hypot(rx * np.cos(t), ry * np.sin(t)), np.hypot(rx * np.sin(t), ry * np.cos(t))
        n += int(((cx - hw < 0) | (cy - hh < 0) | (cx + hw > width) | (cy + hh > height)).sum())
    return n


def _class_ids(
    labels: list[str], class_of: Mapping[str, int | None], frame: Frame, unknown: str
) -> list[int]:
    """Class id per label: >= 1, 0 to drop (label mapped to None, or unknown under skip)."""
    out = []
    for label in labels:
        cls = class_of.get(label, -1)
        if cls == -1:
            if unknown != "skip":
                raise UserError(
                    f"image {frame.name!r}: label {label!r} is not one of the classes "
                    f"{sorted(k for k in class_of if class_of[k] is not None)} "
                    "(add it to --classes or map it in cvat.label_map)"
                )
            out.append(-1)
        else:
            out.append(0 if cls is None else int(cls))
    return out


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
    if frame.columns is not None and frame._shapes is None:
        return _rasterise_columns(
            frame, frame.columns, class_of, height, width, counts, draw, unknown
        )
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
        (cls,) = _class_ids([shape.label], class_of, frame, unknown)
        if cls <= 0:
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
            parts.append(_one_by_one(shape, k, height, width, counts, draw))
        painted.append(shape)
        classes.append(cls)
        z.append(shape.z_order)
        doc.append(shape.order)

    ell_arr = np.array(ell, np.float64).reshape(-1, 5)
    lengths = np.fromiter((len(p) for p in polys), np.int64, len(polys))
    flat = np.concatenate(polys) if polys else np.zeros((0, 2))
    counts.clipped += _clipped(flat, lengths, ell_arr, height, width)
    parts.append(flat_polygon_spans(flat, lengths, np.array(poly_ids, np.int64), height, width))
    parts.append(ellipse_spans(ell_arr, np.array(ell_ids, np.int64), height, width))
    spans = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
    semantic, instances, inst_of_shape, area, box = _paint_all(
        spans,
        np.array(classes, np.int64),
        np.array(z, np.int64),
        np.array(doc, np.int64),
        height,
        width,
        counts,
    )
    for k, shape in enumerate(painted):
        i = int(inst_of_shape[k])
        if i == 0:
            continue
        objects.append(_row(shape, i, classes[k], box[i], int(area[i])))
    return semantic, instances, objects


def _one_by_one(
    shape: Shape, k: int, height: int, width: int, counts: Counts, draw: DrawOptions
) -> Spans:
    x0, y0, x1, y1 = _extent(shape)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        counts.clipped += 1
    if shape.kind == "mask":
        return mask_spans(shape, k, height, width)
    assert shape.points is not None
    if shape.kind == "polyline":
        return line_spans(
            shape.points, draw.polyline_width / 2, False, k, height, width, segments=True
        )
    return line_spans(shape.points, draw.points_radius, False, k, height, width, segments=False)


def _rasterise_columns(
    frame: Frame,
    cols: ShapeColumns,
    class_of: Mapping[str, int | None],
    height: int,
    width: int,
    counts: Counts,
    draw: DrawOptions,
    unknown: str,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """:func:`rasterise_frame` on the columnar fast path (same result, no per-shape objects)."""
    kind = cols.kind
    drawn = np.ones(len(kind), bool)
    for code, name, size in (
        (3, "polyline", draw.polyline_width),
        (4, "points", draw.points_radius),
    ):
        is_kind = kind == code
        if size <= 0 and is_kind.any():  # ignored (and counted) before any label check
            counts.ignored[name] = counts.ignored.get(name, 0) + int(is_kind.sum())
            drawn &= ~is_kind
    cand = np.flatnonzero(drawn)
    labels = cols.label if len(cand) == len(kind) else [cols.label[k] for k in cand.tolist()]
    cls = np.zeros(len(kind), np.int64)
    cls[cand] = np.array(_class_ids(labels, class_of, frame, unknown), np.int64).reshape(-1)
    counts.unknown_label += int((cls[cand] <= 0).sum())
    rows = np.flatnonzero(cls > 0)  # painted shapes, k = position in rows
    kk = kind[rows]
    lengths_all = np.diff(cols.offsets)
    parts = []
    # polygons straight from the flat vertex array; boxes as 4-vertex polygons
    poly = np.flatnonzero(kk == 0)
    box = np.flatnonzero(kk == 2)
    pl = lengths_all[rows[poly]]
    if len(poly) and len(poly) == int((kind == 0).sum()) and not (kind > 2).any():
        pflat = cols.points  # every polygon kept and no point kinds: the whole array
    else:
        pflat = cols.points[np.repeat(_mask_rows(rows[poly], len(kind)), lengths_all)]
    bflat = boxes_corners(cols.params[rows[box]]).reshape(-1, 2)
    flat = np.concatenate([pflat, bflat]) if len(box) else pflat
    lengths = np.concatenate([pl, np.full(len(box), 4, np.int64)])
    ids = np.concatenate([poly, box])
    ell_k = np.flatnonzero(kk == 1)
    ell = cols.params[rows[ell_k]]
    counts.clipped += _clipped(flat, lengths, ell, height, width)
    parts.append(flat_polygon_spans(flat, lengths, ids, height, width))
    parts.append(ellipse_spans(ell, ell_k, height, width))
    for k in np.flatnonzero(kk > 2).tolist():  # drawn polylines / points (rare)
        r = int(rows[k])
        sh = Shape(
            kind=COLUMN_KINDS[int(kind[r])],
            label="",
            order=0,
            points=cols.points[cols.offsets[r] : cols.offsets[r + 1]],
        )
        parts.append(_one_by_one(sh, k, height, width, counts, draw))
    spans = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
    classes = cls[rows]
    semantic, instances, inst_of_shape, area, bx = _paint_all(
        spans, classes, cols.z_order[rows], cols.order[rows], height, width, counts
    )
    painted = np.flatnonzero(inst_of_shape)
    inst = inst_of_shape[painted]
    r = rows[painted]
    b = bx[inst].tolist()
    ar = area[inst].tolist()
    lab, src, att = cols.label, cols.source, cols.attributes
    kinds = [COLUMN_KINDS[c] for c in kind[r].tolist()]
    objects = [
        {
            "instance_id": i,
            "kind": kd,
            "label": lab[j],
            "class_id": c,
            "x1": bb[0],
            "y1": bb[1],
            "x2": bb[2],
            "y2": bb[3],
            "area": a,
            "occluded": oc,
            "z_order": zz,
            "group_id": g,
            "source": src[j],
            "track_id": -1,
            "attributes": att[j],
        }
        for i, kd, j, c, bb, a, oc, zz, g in zip(
            inst.tolist(),
            kinds,
            r.tolist(),
            classes[painted].tolist(),
            b,
            ar,
            cols.occluded[r].astype(np.int64).tolist(),
            cols.z_order[r].tolist(),
            cols.group_id[r].tolist(),
            strict=True,
        )
    ]
    return semantic, instances, objects


def _mask_rows(rows: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    m[rows] = True
    return m


def _paint_all(
    spans: Spans,
    classes: np.ndarray,
    z: np.ndarray,
    doc: np.ndarray,
    height: int,
    width: int,
    counts: Counts,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paint the spans of n shapes; instance ids 1..K in document order among covering shapes.

    Returns semantic (H, W) uint8, instances (H, W) uint32, inst_of_shape (n,) int64
    (0: covers no pixel), area (K + 1,) int64 and box (K + 1, 4) int64 of visible pixels.
    """
    n = len(classes)
    covered = np.zeros(n, bool)
    covered[spans[0]] = True
    k_max = int(covered.sum())
    counts.empty += n - k_max
    inst_of_shape = np.zeros(n, np.int64)
    # document order = position k (shapes are listed in document order)
    inst_of_shape[covered] = np.arange(1, k_max + 1)
    ranks = np.zeros(n, np.int64)
    ranks[np.lexsort((doc, z))] = np.arange(n)
    semantic, instances, area, box = paint(
        spans, ranks, inst_of_shape, classes, k_max, height, width
    )
    return semantic, instances, inst_of_shape, area, box


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
