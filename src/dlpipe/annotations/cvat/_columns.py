"""The reader's fast path: an image's polygons, ellipses, boxes, polylines and points as
columns (:class:`ShapeColumns`), every number of the image parsed in one NumPy call."""

from __future__ import annotations

import math
import warnings

import numpy as np

from dlpipe.annotations.cvat._model import COLUMN_KINDS, Counts, ShapeColumns
from dlpipe.annotations.cvat._shapes import SHAPE_TAGS, TRUE_VALUES, InvalidShape, reversed_box
from dlpipe.annotations.cvat._xml import Record

_CODE = {k: i for i, k in enumerate(COLUMN_KINDS)}  # kinds of the columnar fast path
_PARAM_KEYS = (("cx", "cy", "rx", "ry"), ("xtl", "ytl", "xbr", "ybr"))


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _floats_csv(text: str) -> np.ndarray:
    """Comma-separated numbers to float64 (NaN where a field is unreadable).

    NumPy's C text parser; a string it cannot read to the end (empty or junk fields)
    is read again field by field.
    """
    try:
        with warnings.catch_warnings():  # older NumPy warns and stops at the bad field
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(text, sep=",")
        if len(values) == text.count(",") + 1:
            return values
    except ValueError:  # NumPy >= 2.3: "could not be read to its end"
        pass
    return np.array([_float_or_nan(v) for v in text.split(",")], np.float64)


def shape_columns(
    records: list[Record], counts: Counts, *, lenient: bool = False, where: str = "image"
) -> ShapeColumns | None:
    """An image with only polygons, ellipses, boxes, polylines and points as
    :class:`ShapeColumns` (None when it holds any other shape kind: the general path).

    Invalid shapes (bad numbers, a polygon with fewer than 3 vertices, an ellipse radius
    <= 0, a reversed box under ``lenient``) are dropped and counted in ``counts.invalid``.

    Raises
    ------
    UserError
        A reversed box (``xtl > xbr`` or ``ytl > ybr``) without ``lenient``.
    """
    codes: list[int] = []
    kept: list[Record] = []
    for record in records:
        code = _CODE.get(record[0])
        if code is None:
            if record[0] in SHAPE_TAGS:
                return None  # mask, tag, skeleton, cuboid: the general path
            continue
        codes.append(code)
        kept.append(record)
    attrs: list[dict[str, str]] = [r[1] for r in kept]
    orders = [r[2] for r in kept]
    custom = [r[3] or {} for r in kept]
    n = len(codes)
    kind = np.array(codes, np.int8)
    valid = np.ones(n, bool)
    params = np.zeros((n, 5), np.float64)
    lengths = np.zeros(n, np.int64)
    # every number of the frame is parsed in one call: z_order and group_id of each
    # shape, the 5 parameters of each ellipse / box, then the vertices
    txt = [a.get("z_order") or "0" for a in attrs]
    txt += [a.get("group_id") or "0" for a in attrs]
    area_rows = [k for k in range(n) if codes[k] in (1, 2)]
    for k in area_rows:
        a = attrs[k]
        txt += [a.get(key) or "nan" for key in _PARAM_KEYS[codes[k] - 1]]
        txt.append(a.get("rotation") or "0")
    for k in range(n):
        if codes[k] not in (1, 2):
            t = attrs[k].get("points")
            if not t or t.count(",") != t.count(";") + 1:
                valid[k] = False
            else:
                txt.append(t)
                lengths[k] = t.count(";") + 1
    nums = _floats_csv(",".join(txt).replace(";", ",")) if txt else np.zeros(0)
    ints = np.nan_to_num(nums[: 2 * n], nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    z_order, group_id = ints[:n], ints[n:]
    vals = nums[2 * n : 2 * n + 5 * len(area_rows)].reshape(-1, 5)
    points = nums[2 * n + 5 * len(area_rows) :].reshape(-1, 2)
    if area_rows:
        ok = np.isfinite(vals).all(axis=1)
        ok &= (kind[area_rows] != 1) | ((vals[:, 2] > 0) & (vals[:, 3] > 0))
        boxes = kind[area_rows] == 2
        flipped = boxes & ok & ((vals[:, 0] > vals[:, 2]) | (vals[:, 1] > vals[:, 3]))
        if flipped.any():
            row = int(np.flatnonzero(flipped)[0])
            try:
                reversed_box(
                    vals[row], lenient=lenient, where=f"{where}, box #{orders[area_rows[row]]}"
                )
            except InvalidShape:
                ok &= ~flipped
        params[area_rows] = vals
        valid[area_rows] = ok
    if len(points):
        has = lengths > 0
        starts = (np.cumsum(lengths) - lengths)[has]
        valid[has] &= np.logical_and.reduceat(np.isfinite(points).all(axis=1), starts)
    valid &= (kind != 0) | (lengths >= 3)  # a polygon needs 3 vertices
    bad = int(n - valid.sum())
    if bad:
        counts.invalid += bad
        points = points[np.repeat(valid, lengths)]
        keep = np.flatnonzero(valid).tolist()
        kind, params, lengths = kind[valid], params[valid], lengths[valid]
        z_order, group_id = z_order[valid], group_id[valid]
        orders = [orders[k] for k in keep]
        attrs = [attrs[k] for k in keep]
        custom = [custom[k] for k in keep]
    offsets = np.zeros(len(kind) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ShapeColumns(
        kind=kind,
        label=[a.get("label", "") for a in attrs],
        order=np.array(orders, np.int64),
        z_order=z_order,
        group_id=group_id,
        occluded=np.array([a.get("occluded", "0") in TRUE_VALUES for a in attrs], bool),
        source=[a.get("source", "") for a in attrs],
        attributes=custom,
        params=params,
        offsets=offsets,
        points=points,
    )
