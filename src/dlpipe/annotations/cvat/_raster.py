"""Scanline rasterisation of CVAT shapes at pixel centres, vectorised over all shapes of a frame.

Convention: pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5) and belongs
to a shape when its centre is inside. Polygons (and boxes, which are 4-point polygons) use
the even-odd rule with the usual fill rule for centres exactly on an edge: left and top
edges are inside, right and bottom edges outside, so two shapes that share an edge never
share a pixel. Ellipses are closed: a centre with ((u/rx)^2 + (v/ry)^2) <= 1 is inside.

Every shape becomes a list of spans (shape, row, first column, end column); the spans of a
whole frame are painted at once in paint order.
"""

from __future__ import annotations

import itertools

import numpy as np

from dlpipe.annotations.cvat._model import Shape

Spans = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # shape idx, row, c0, c1 (end)


def _empty() -> Spans:
    e = np.zeros(0, np.int64)
    return e, e, e, e


def box_corners(xtl: float, ytl: float, xbr: float, ybr: float, rotation: float) -> np.ndarray:
    """(4, 2) corners (x, y) of a box rotated ``rotation`` degrees clockwise about its centre."""
    pts = np.array([[xtl, ytl], [xbr, ytl], [xbr, ybr], [xtl, ybr]], np.float64)
    if rotation % 360.0 == 0.0:
        return pts
    t = np.deg2rad(rotation)
    c, s = np.cos(t), np.sin(t)
    centre = np.array([(xtl + xbr) / 2, (ytl + ybr) / 2])
    d = pts - centre
    # Clockwise on screen (y down) = the usual counter-clockwise matrix in (x, y).
    return centre + np.stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c], axis=1)


def boxes_corners(params: np.ndarray) -> np.ndarray:
    """(m, 4, 2) corners of m boxes; ``params`` (m, 5) rows (xtl, ytl, xbr, ybr, rotation).

    Same values as :func:`box_corners` row by row (unrotated boxes exactly as given).
    """
    xtl, ytl, xbr, ybr, rot = (params[:, k] for k in range(5))
    pts = np.stack(
        [
            np.stack([xtl, ytl], 1),
            np.stack([xbr, ytl], 1),
            np.stack([xbr, ybr], 1),
            np.stack([xtl, ybr], 1),
        ],
        axis=1,
    )
    turned = np.flatnonzero(rot % 360.0 != 0.0)
    if len(turned):
        t = np.deg2rad(rot[turned])[:, None]
        c, s = np.cos(t), np.sin(t)
        centre = np.stack([(xtl + xbr) / 2, (ytl + ybr) / 2], 1)[turned][:, None, :]
        d = pts[turned] - centre
        pts[turned] = centre + np.stack(
            [d[..., 0] * c - d[..., 1] * s, d[..., 0] * s + d[..., 1] * c], axis=-1
        )
    return pts


def polygon_spans(polys: list[np.ndarray], ids: np.ndarray, height: int, width: int) -> Spans:
    """Spans of even-odd filled polygons given as a list of (n_k, 2) (x, y) arrays."""
    if not polys:
        return _empty()
    lengths = np.fromiter((len(p) for p in polys), np.int64, len(polys))
    return flat_polygon_spans(np.concatenate(polys), lengths, ids, height, width)


def flat_polygon_spans(
    p0: np.ndarray, lengths: np.ndarray, ids: np.ndarray, height: int, width: int
) -> Spans:
    """Spans of even-odd filled polygons, all at once.

    Parameters
    ----------
    p0 : (P, 2) float64 (x, y) vertices of all polygons, one after the other
    lengths : (m,) int number of vertices of each polygon (sums to P)
    ids : (m,) int shape index reported for each polygon
    height, width : image size; spans are clipped to it
    """
    if len(lengths) == 0:
        return _empty()
    # next vertex within each polygon (closing edge back to the first vertex)
    nxt = np.arange(1, len(p0) + 1)
    ends = np.cumsum(lengths)
    nxt[ends - 1] = ends - lengths
    p1 = p0[nxt]
    sid = np.repeat(np.asarray(ids, np.int64), lengths)
    x0, y0, x1, y1 = p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # rows whose centre y = r + 0.5 lies in [lo, hi)
    r0 = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64)
    n = np.maximum(r1 - r0, 0)
    keep = np.flatnonzero(n)
    if not len(keep):
        return _empty()
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    sid, r0, n = sid[keep], r0[keep], n[keep]
    starts = np.cumsum(n) - n
    rows = np.repeat(r0 - starts, n) + np.arange(int(starts[-1] + n[-1]))
    slope = (x1 - x0) / (y1 - y0)
    # x of the crossing, exactly as x0 + (yc - y0) * slope (edge-exact centres depend on it)
    xs = np.repeat(x0, n) + (rows + 0.5 - np.repeat(y0, n)) * np.repeat(slope, n)
    s = np.repeat(sid, n)
    order = np.lexsort((xs, rows, s))
    s, rows, xs = s[order], rows[order], xs[order]
    # each (shape, row) has an even number of crossings: consecutive pairs are spans
    c0 = np.ceil(xs[0::2] - 0.5)
    c1 = np.ceil(xs[1::2] - 0.5)
    np.clip(c0, 0, width, out=c0)
    np.clip(c1, 0, width, out=c1)
    good = c1 > c0
    return s[0::2][good], rows[0::2][good], c0[good].astype(np.int64), c1[good].astype(np.int64)


def ellipse_spans(params: np.ndarray, ids: np.ndarray, height: int, width: int) -> Spans:
    """Spans of closed rotated ellipses, all at once.

    Parameters
    ----------
    params : (m, 5) float64 rows (cx, cy, rx, ry, rotation in degrees clockwise on screen)
    ids : (m,) int shape index reported for each ellipse
    """
    if len(params) == 0:
        return _empty()
    cx, cy, rx, ry, rot = (params[:, k] for k in range(5))
    t = np.deg2rad(rot)
    c, s = np.cos(t), np.sin(t)
    # implicit form A dx^2 + B dx dy + C dy^2 <= 1 with u = dx c + dy s, v = -dx s + dy c
    ia, ib = 1.0 / rx**2, 1.0 / ry**2
    A = c * c * ia + s * s * ib
    B = 2.0 * c * s * (ia - ib)
    C = s * s * ia + c * c * ib
    half_h = np.sqrt(rx**2 * s**2 + ry**2 * c**2)
    r0 = np.clip(np.ceil(cy - half_h - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.floor(cy + half_h - 0.5) + 1, 0, height).astype(np.int64)
    n = np.maximum(r1 - r0, 0)
    e = np.repeat(np.arange(len(n)), n)
    starts = np.cumsum(n) - n
    rows = r0[e] + (np.arange(int(n.sum())) - starts[e])
    dy = rows + 0.5 - cy[e]
    a, b, cc = A[e], B[e] * dy, C[e] * dy * dy - 1.0
    disc = b * b - 4.0 * a * cc
    ok = disc >= 0
    root = np.sqrt(np.where(ok, disc, 0.0))
    xl = cx[e] + (-b - root) / (2.0 * a)
    xr = cx[e] + (-b + root) / (2.0 * a)
    c0 = np.clip(np.ceil(xl - 0.5), 0, width).astype(np.int64)
    c1 = np.clip(np.floor(xr - 0.5) + 1, 0, width).astype(np.int64)
    good = ok & (c1 > c0)
    return np.asarray(ids, np.int64)[e][good], rows[good], c0[good], c1[good]


def mask_spans(shape: Shape, sid: int, height: int, width: int) -> Spans:
    """Spans of a decoded CVAT mask placed at (top, left), clipped to the image."""
    m = shape.mask
    assert m is not None
    padded = np.zeros((m.shape[0], m.shape[1] + 2), np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    r_on, c_on = np.nonzero(d == 1)
    _, c_off = np.nonzero(d == -1)
    rows = r_on + shape.top
    c0 = np.clip(c_on + shape.left, 0, width)
    c1 = np.clip(c_off + shape.left, 0, width)
    good = (rows >= 0) & (rows < height) & (c1 > c0)
    rows, c0, c1 = rows[good], c0[good], c1[good]
    return np.full(len(rows), sid, np.int64), rows.astype(np.int64), c0.astype(np.int64), c1


def line_spans(
    points: np.ndarray,
    radius: float,
    closed_polyline: bool,
    sid: int,
    height: int,
    width: int,
    *,
    segments: bool,
) -> Spans:
    """Spans of pixels whose centre lies within ``radius`` of a polyline (or of points)."""
    x0 = max(int(np.floor(points[:, 0].min() - radius)), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + radius)) + 1, width)
    y0 = max(int(np.floor(points[:, 1].min() - radius)), 0)
    y1 = min(int(np.ceil(points[:, 1].max() + radius)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return _empty()
    yy, xx = np.mgrid[y0:y1, x0:x1]
    px, py = xx + 0.5, yy + 0.5
    inside = np.zeros(px.shape, bool)
    if segments and len(points) >= 2:
        for (ax, ay), (bx, by) in itertools.pairwise(points):
            dx, dy = bx - ax, by - ay
            L2 = dx * dx + dy * dy
            t = np.zeros_like(px)
            if L2 > 0:
                t = np.clip(((px - ax) * dx + (py - ay) * dy) / L2, 0, 1)
            inside |= (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2 <= radius * radius
    else:
        for ax, ay in points:
            inside |= (px - ax) ** 2 + (py - ay) ** 2 <= radius * radius
    fake = Shape(kind="mask", label="", order=0, mask=inside, left=x0, top=y0)
    return mask_spans(fake, sid, height, width)


def paint(
    spans: Spans,
    ranks: np.ndarray,
    inst_of_shape: np.ndarray,
    classes: np.ndarray,
    k_max: int,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paint spans in rank order (higher rank on top); area and box of each visible instance.

    Parameters
    ----------
    spans : (shape index, row, c0, c1) arrays
    ranks : (n_shapes,) int paint rank of each shape index, all distinct
    inst_of_shape : (n_shapes,) int instance id (>= 1 for every shape with a span)
    classes : (n_shapes,) int class id (1..255)
    k_max : the largest instance id

    Returns
    -------
    semantic : (height, width) uint8
    instances : (height, width) uint32
    area : (k_max + 1,) int64 visible pixels of each instance id
    box : (k_max + 1, 4) int64 x1, y1, x2, y2 (exclusive) of those pixels
    """
    sid, rows, c0, c1 = spans
    semantic = np.zeros(height * width, np.uint8)
    instances = np.zeros(height * width, np.uint32)
    area = np.zeros(k_max + 1, np.int64)
    box = np.zeros((k_max + 1, 4), np.int64)
    if len(sid):
        order = np.argsort(ranks[sid], kind="stable")  # spans in paint order
        sid, rows, c0, c1 = sid[order], rows[order], c0[order], c1[order]
        n = c1 - c0
        starts = np.cumsum(n) - n
        idx = np.arange(int(starts[-1] + n[-1]))
        pix = np.repeat(rows * width + c0 - starts, n) + idx
        ipix = np.repeat(inst_of_shape[sid].astype(np.uint32), n)
        # NumPy assigns repeated indices in order, so the last (highest-rank) write wins;
        # tests/annotations/test_raster.py::test_z_order_paint_order_and_no_holes guards it.
        instances[pix] = ipix
        semantic[pix] = np.repeat(classes[sid].astype(np.uint8), n)
        # visible pixels: where the shape's own id survived. Per span: how many, and the
        # first and last of them; then per shape (its spans are consecutive) area and box.
        vis = instances[pix] == ipix
        count = np.add.reduceat(vis, starts, dtype=np.int64)
        big = len(idx)
        first = np.minimum.reduceat(np.where(vis, idx, big), starts)
        last = np.maximum.reduceat(np.where(vis, idx, -1), starts)
        seen = count > 0
        x1 = np.where(seen, c0 + first - starts, width)
        x2 = np.where(seen, c0 + last - starts + 1, 0)
        y1 = np.where(seen, rows, height)
        y2 = np.where(seen, rows + 1, 0)
        seg = np.flatnonzero(np.concatenate([[True], sid[1:] != sid[:-1]]))
        ids = inst_of_shape[sid[seg]]
        area[ids] = np.add.reduceat(count, seg)
        box[ids, 0] = np.minimum.reduceat(x1, seg)
        box[ids, 1] = np.minimum.reduceat(y1, seg)
        box[ids, 2] = np.maximum.reduceat(x2, seg)
        box[ids, 3] = np.maximum.reduceat(y2, seg)
        box[area == 0] = 0
    return semantic.reshape(height, width), instances.reshape(height, width), area, box
