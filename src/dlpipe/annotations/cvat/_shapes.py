"""One :class:`Shape` per annotation: the reader's general path.

An image that holds a mask, a tag, a skeleton or a cuboid, and every shape of a video
track, is read here, shape by shape, from its tag and attribute mapping. An image holding
only polygons, ellipses, boxes, polylines and points takes the columnar fast path instead
(:mod:`dlpipe.annotations.cvat._columns`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlpipe.annotations.cvat._model import Counts, Shape
from dlpipe.annotations.cvat._xml import Record
from dlpipe.errors import UserError
from dlpipe.stores.guards import check_allocation

SHAPE_TAGS = frozenset(
    {"polygon", "ellipse", "box", "mask", "polyline", "points", "tag", "skeleton", "cuboid"}
)
TRUE_VALUES = frozenset({"1", "true", "True"})
_LINE_TAGS = ("polygon", "polyline", "points")


class InvalidShape(ValueError):
    """Coordinates that cannot make a shape (skipped and counted, not an error)."""


def _floats(text: str | None, what: str) -> np.ndarray:
    if text is None:
        raise InvalidShape(f"no {what}")
    try:
        values = np.array(text.replace(";", ",").split(","), dtype=np.float64)
    except ValueError as exc:
        raise InvalidShape(f"unreadable {what}: {text[:40]!r}") from exc
    if not np.all(np.isfinite(values)):
        raise InvalidShape(f"non-finite {what}")
    return values


def _num(a: Any, key: str) -> float:
    text = a.get(key)
    if text is None:
        raise InvalidShape(f"no {key}")
    try:
        v = float(text)
    except ValueError as exc:
        raise InvalidShape(f"unreadable {key}={text!r}") from exc
    if not math.isfinite(v):
        raise InvalidShape(f"non-finite {key}")
    return v


def parse_int(text: str | None, default: int = 0) -> int:
    if text in (None, ""):
        return default
    try:
        return int(float(text))
    except ValueError:
        return default


def decode_rle(
    rle: str, width: int, height: int, *, lenient: bool = False, where: str = "mask"
) -> tuple[np.ndarray, bool]:
    """Decode CVAT's mask RLE into a (height, width) bool array.

    Runs alternate background, foreground, background, ... starting with background,
    row-major over the mask's own box. The runs must sum to ``width * height``; with
    ``lenient`` a short sum is padded with background (a long sum is always an error).

    Returns
    -------
    mask : (height, width) bool
    padded : whether the tail was padded
    """
    try:
        values_ = [int(v) for v in rle.replace(" ", "").split(",") if v != ""]
    except ValueError as exc:
        raise UserError(f"{where}: unreadable RLE {rle[:40]!r}") from exc
    if width <= 0 or height <= 0 or any(v < 0 for v in values_):
        raise UserError(f"{where}: bad mask size {width}x{height} or negative RLE run")
    need = width * height
    check_allocation(need, f"a {width} x {height} mask", field=f"{where} width/height")
    total = sum(values_)  # Python ints: a run beyond int64 is reported, never overflows
    padded = False
    if total != need:
        if total < need and lenient:
            padded = True
        else:
            raise UserError(
                f"{where}: RLE runs sum to {total}, expected width*height = "
                f"{width}*{height} = {need}"
                + (" (--lenient pads a short tail)" if total < need else "")
            )
    runs = np.array(values_, np.int64)  # each run <= need now: fits int64
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    if padded:
        flat = np.concatenate([flat, np.zeros(need - total, bool)])
    return flat.reshape(height, width), padded


def _header(kind: str, a: Any, custom: dict[str, str], order: int) -> Shape:
    """A shape without its coordinates: label, order, flags, group and custom attributes."""
    return Shape(
        kind=kind,
        label=a.get("label", ""),
        order=order,
        occluded=a.get("occluded", "0") in TRUE_VALUES,
        z_order=parse_int(a.get("z_order")),
        group_id=parse_int(a.get("group_id")),
        source=a.get("source", ""),
        attributes=custom,
    )


def build_shape(
    kind: str,
    a: Any,
    custom: dict[str, str],
    order: int,
    *,
    lenient: bool,
    where: str,
    counts: Counts,
) -> Shape | None:
    """One shape from its tag and attribute mapping, or None (counted in
    ``counts.invalid``) when its coordinates cannot make a shape.

    Raises
    ------
    UserError
        a mask RLE that does not fit its box (see :func:`decode_rle`).
    """
    shape = _header(kind, a, custom, order)
    try:
        _coordinates(shape, a, lenient=lenient, where=where, counts=counts)
    except InvalidShape:
        counts.invalid += 1
        return None
    return shape


def _coordinates(shape: Shape, a: Any, *, lenient: bool, where: str, counts: Counts) -> None:
    """Set the points, parameters or mask of ``shape`` (raises InvalidShape for bad
    coordinates)."""
    kind, order = shape.kind, shape.order
    if kind in ("polygon", "polyline", "points"):
        xy = _floats(a.get("points"), "points")
        if len(xy) % 2:
            raise InvalidShape("odd number of point coordinates")
        shape.points = xy.reshape(-1, 2)
        if kind == "polygon" and len(shape.points) < 3:
            raise InvalidShape("polygon with fewer than 3 points")
    elif kind == "ellipse":
        shape.params = tuple(_num(a, k) for k in ("cx", "cy", "rx", "ry"))
        shape.rotation = _num(a, "rotation") if a.get("rotation") else 0.0
        if shape.params[2] <= 0 or shape.params[3] <= 0:
            raise InvalidShape("ellipse radius <= 0")
    elif kind == "box":
        shape.params = tuple(_num(a, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        shape.rotation = _num(a, "rotation") if a.get("rotation") else 0.0
        reversed_box(shape.params, lenient=lenient, where=f"{where}, box #{order}")
    elif kind == "mask":
        left, top = int(_num(a, "left")), int(_num(a, "top"))
        width, height = int(_num(a, "width")), int(_num(a, "height"))
        shape.left, shape.top = left, top
        shape.mask, padded = decode_rle(
            a.get("rle", ""),
            width,
            height,
            lenient=lenient,
            where=f"{where}, mask #{order} (label {shape.label!r})",
        )
        counts.padded_rle += padded


def reversed_box(params: Any, *, lenient: bool, where: str) -> bool:
    """Whether a box's corners are reversed (``xtl > xbr`` or ``ytl > ybr``).

    Raises
    ------
    UserError
        A reversed box without ``lenient`` (with it the box is skipped and counted as
        invalid: the caller raises :class:`InvalidShape` or drops it).
    """
    xtl, ytl, xbr, ybr = (float(v) for v in params[:4])
    if xtl <= xbr and ytl <= ybr:
        return False
    if not lenient:
        raise UserError(
            f"{where}: reversed box (xtl={xtl:g} xbr={xbr:g}, ytl={ytl:g} ybr={ybr:g}: "
            "the top-left corner must not lie right of or below the bottom-right one; "
            "--lenient skips it)"
        )
    raise InvalidShape("reversed box")


def image_shapes(
    records: list[Record], counts: Counts, *, lenient: bool, where: str
) -> list[Shape]:
    """The shapes of one ``<image>`` (its child records), in document order.

    Skeletons and cuboids are counted, not drawn; shapes with bad coordinates are skipped
    and counted. The vertices of all polygons, polylines and points are parsed in one go.
    """
    shapes: list[Shape | None] = []
    line_idx: list[int] = []
    line_txt: list[str] = []
    for tag, a, order, custom in records:
        if tag not in SHAPE_TAGS:
            continue
        if tag in ("skeleton", "cuboid"):
            counts.bump(counts.counted, tag)
            continue
        if tag in _LINE_TAGS:
            # coordinates of all such shapes are converted in one go below
            txt = a.get("points")
            if not txt or txt.count(",") != txt.count(";") + 1:
                counts.invalid += 1
                continue
            line_idx.append(len(shapes))
            line_txt.append(txt)
            shapes.append(_header(tag, a, custom or {}, order))
            continue
        shape = build_shape(
            tag, a, custom or {}, order, lenient=lenient, where=where, counts=counts
        )
        if shape is not None:
            shapes.append(shape)
    if line_txt:
        _points(shapes, line_idx, line_txt, counts)
    return [sh for sh in shapes if sh is not None]


def _points(shapes: list[Shape | None], idx: list[int], txt: list[str], counts: Counts) -> None:
    """Fill ``points`` of the listed shapes, parsing all coordinate strings at once."""
    n_pts = np.fromiter((t.count(";") + 1 for t in txt), np.int64, len(txt))
    try:
        flat = np.array(";".join(txt).replace(";", ",").split(","), dtype=np.float64)
    except ValueError:  # some string is unreadable: find which, one by one
        for i, t in zip(idx, txt, strict=True):
            try:
                shapes[i].points = _floats(t, "points").reshape(-1, 2)  # type: ignore[union-attr]
            except InvalidShape:
                shapes[i] = None
                counts.invalid += 1
        _check_points(shapes, idx, counts)
        return
    xy = flat.reshape(-1, 2)
    ends = np.cumsum(n_pts)
    starts = ends - n_pts
    finite = np.logical_and.reduceat(np.isfinite(xy).all(axis=1), starts)
    for i, s0, s1, ok in zip(idx, starts.tolist(), ends.tolist(), finite.tolist(), strict=True):
        if ok:
            shapes[i].points = xy[s0:s1]  # type: ignore[union-attr]
        else:
            shapes[i] = None
            counts.invalid += 1
    _check_points(shapes, idx, counts)


def _check_points(shapes: list[Shape | None], idx: list[int], counts: Counts) -> None:
    for i in idx:
        sh = shapes[i]
        if sh is not None and sh.kind == "polygon" and len(sh.points) < 3:
            shapes[i] = None
            counts.invalid += 1
