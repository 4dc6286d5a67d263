"""Rasterisation against analytic references, and XML round trips that must be exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from skimage.draw import polygon as sk_polygon

from dlpipe.annotations import (
    Frame,
    Shape,
    convert,
    rasterise_frame,
    read_objects,
    targets,
    targets_from_arrays,
    write_cvat_xml,
)

H, W = 48, 64
YY, XX = np.mgrid[0:H, 0:W]
CX, CY = XX + 0.5, YY + 0.5  # pixel centres


def ellipse_ref(cx, cy, rx, ry, rot):
    t = np.deg2rad(rot)
    u = (CX - cx) * np.cos(t) + (CY - cy) * np.sin(t)
    v = -(CX - cx) * np.sin(t) + (CY - cy) * np.cos(t)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0, np.abs((u / rx) ** 2 + (v / ry) ** 2 - 1)


def rbox_ref(xtl, ytl, xbr, ybr, rot):
    """Centres inside the box after rotating them back about its centre."""
    t = np.deg2rad(rot)
    mx, my = (xtl + xbr) / 2, (ytl + ybr) / 2
    dx, dy = CX - mx, CY - my
    u = dx * np.cos(t) + dy * np.sin(t)  # rotate by -rot
    v = -dx * np.sin(t) + dy * np.cos(t)
    hw, hh = (xbr - xtl) / 2, (ybr - ytl) / 2
    margin = np.minimum(np.abs(np.abs(u) - hw), np.abs(np.abs(v) - hh))
    return (np.abs(u) < hw) & (np.abs(v) < hh), margin


def crossing_ref(pts):
    """Pure even-odd crossing test at every pixel centre (the textbook algorithm)."""
    inside = np.zeros((H, W), bool)
    n = len(pts)
    for k in range(n):
        (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % n]
        cond = (y0 > CY) != (y1 > CY)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x0 + (CY - y0) * (x1 - x0) / (y1 - y0)
        inside ^= cond & (CX < xint)
    return inside


def raster(shapes, classes=None):
    frame = Frame(id=0, name="t", width=W, height=H, shapes=shapes)
    class_of = classes or {s.label: 1 for s in shapes}
    return rasterise_frame(frame, class_of, H, W)


def test_pixel_centre_convention() -> None:
    def box(*p, rot=0.0):
        return Shape(kind="box", label="a", order=0, params=p, rotation=rot)

    sem, _, _ = raster([box(0.0, 0.0, 1.0, 1.0)])
    assert sem.sum() == 1 and sem[0, 0] == 1  # the unit box is exactly pixel (0, 0)
    sem, _, _ = raster([box(0.4, 0.4, 0.6, 0.6)])
    assert sem.sum() == 1 and sem[0, 0] == 1  # holds the centre (0.5, 0.5)
    sem, _, _ = raster([box(0.6, 0.6, 1.4, 1.4)])
    assert sem.sum() == 0  # holds no centre: 0.5 < 0.6 and 1.5 > 1.4
    # shared edge x=5: the left box gets columns 0..4, the right one 5..9; no overlap
    sem, inst, _ = raster([box(0.0, 0.0, 5.0, 2.0), box(5.0, 0.0, 10.0, 2.0)])
    assert (inst[:2, :5] == 1).all() and (inst[:2, 5:10] == 2).all() and sem.sum() == 20
    # ellipse rotation: +45 degrees turns the long axis from +x towards +y (down-right)
    e = Shape(kind="ellipse", label="a", order=0, params=(20.0, 20.0, 12.0, 1.5), rotation=45)
    sem, _, _ = raster([e])
    assert sem[27, 27] == 1 and sem[12, 12] == 1  # centre (27.5, 27.5) is on the long axis
    assert sem[12, 27] == 0 and sem[27, 12] == 0


@pytest.mark.parametrize("seed", range(6))
def test_random_polygons_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in (3, 5, 9, 17):
        pts = rng.uniform([-8, -8], [W + 8, H + 8], size=(n, 2))  # self-intersecting, clipped
        sem, _, _ = raster([Shape(kind="polygon", label="a", order=0, points=pts)])
        np.testing.assert_array_equal(sem.astype(bool), crossing_ref(pts))
        # skimage.draw.polygon with pixel-centre coordinates (row = y - 0.5, col = x - 0.5)
        rr, cc = sk_polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, (H, W))
        ref = np.zeros((H, W), bool)
        ref[rr, cc] = True
        if n == 3:  # skimage uses the same even-odd rule: identical away from ties
            np.testing.assert_array_equal(sem.astype(bool), ref)


@pytest.mark.parametrize("seed", range(6))
def test_random_rotated_ellipses_and_boxes_exact(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for _ in range(8):
        cx, cy = rng.uniform(-5, W + 5), rng.uniform(-5, H + 5)
        rx, ry = rng.uniform(0.3, 20), rng.uniform(0.3, 20)
        rot = rng.uniform(-360, 360)
        sem, _, _ = raster(
            [Shape(kind="ellipse", label="a", order=0, params=(cx, cy, rx, ry), rotation=rot)]
        )
        ref, margin = ellipse_ref(cx, cy, rx, ry, rot)
        sure = margin > 1e-9  # exact everywhere but on the boundary itself
        np.testing.assert_array_equal(sem.astype(bool)[sure], ref[sure])
        x0, y0 = rng.uniform(-5, W), rng.uniform(-5, H)
        w, h = rng.uniform(0.5, 30), rng.uniform(0.5, 30)
        sem, _, _ = raster(
            [Shape(kind="box", label="a", order=0, params=(x0, y0, x0 + w, y0 + h), rotation=rot)]
        )
        ref, margin = rbox_ref(x0, y0, x0 + w, y0 + h, rot)
        sure = margin > 1e-9
        np.testing.assert_array_equal(sem.astype(bool)[sure], ref[sure])


def test_z_order_paint_order_and_no_holes() -> None:
    a = Shape(kind="box", label="a", order=0, params=(0.0, 0.0, 30.0, 30.0), z_order=2)
    b = Shape(kind="ellipse", label="b", order=1, params=(20.0, 20.0, 10.0, 10.0), z_order=-3)
    c = Shape(kind="box", label="c", order=2, params=(10.0, 10.0, 40.0, 40.0), z_order=2)
    sem, inst, objs = raster([a, b, c], {"a": 1, "b": 2, "c": 3})
    ra = np.zeros((H, W), bool)
    ra[0:30, 0:30] = True
    rb, _ = ellipse_ref(20, 20, 10, 10, 0)
    rc = np.zeros((H, W), bool)
    rc[10:40, 10:40] = True
    # paint order: b (z -3), then a and c (z 2, document order: c last, on top)
    exp = np.zeros((H, W), np.uint8)
    exp[rb] = 2
    exp[ra] = 1
    exp[rc] = 3
    np.testing.assert_array_equal(sem, exp)
    np.testing.assert_array_equal(inst, np.array([0, 1, 2, 3], np.uint32)[exp])
    assert ((sem > 0) == (ra | rb | rc)).all()  # no holes where shapes overlap
    assert [o["area"] for o in objs] == [int((exp == k).sum()) for k in (1, 2, 3)]
    assert objs[1]["area"] == int((rb & ~ra & ~rc).sum())


def test_invalid_and_clipped_counted() -> None:
    from dlpipe.annotations import Counts

    counts = Counts()
    shapes = [
        Shape(kind="box", label="a", order=0, params=(-5.0, -5.0, 3.0, 3.0)),  # clipped
        Shape(kind="box", label="a", order=1, params=(100.0, 100.0, 110.0, 110.0)),  # outside
        Shape(
            kind="polygon", label="a", order=2, points=np.array([[20.0, 20], [30, 20], [30, 30]])
        ),
    ]
    frame = Frame(id=0, name="t", width=W, height=H, shapes=shapes)
    _, _, objs = rasterise_frame(frame, {"a": 1}, H, W, counts=counts)
    assert counts.clipped == 2 and counts.empty == 1
    assert [o["instance_id"] for o in objs] == [1, 2]  # the empty box gets no id
    assert objs[0]["area"] == 9 and (objs[0]["x2"], objs[0]["y2"]) == (3, 3)


def _encode_rle(mask: np.ndarray) -> str:
    flat = mask.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], change]))
    return ", ".join(str(int(r)) for r in runs)


def test_round_trip_xml_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    shapes, refs = [], []
    for k in range(12):
        kind = ["ellipse", "box", "polygon", "mask"][k % 4]
        z = int(rng.integers(-2, 3))
        label = ["a", "b"][k % 2]
        if kind == "ellipse":
            p = dict(
                cx=rng.uniform(0, W),
                cy=rng.uniform(0, H),
                rx=rng.uniform(2, 12),
                ry=rng.uniform(2, 12),
                rotation=rng.uniform(0, 360),
            )
            ref, _ = ellipse_ref(p["cx"], p["cy"], p["rx"], p["ry"], p["rotation"])
        elif kind == "box":
            x, y = rng.uniform(-4, W - 10), rng.uniform(-4, H - 10)
            p = dict(
                xtl=x,
                ytl=y,
                xbr=x + rng.uniform(3, 20),
                ybr=y + rng.uniform(3, 20),
                rotation=rng.uniform(0, 360),
            )
            ref, _ = rbox_ref(p["xtl"], p["ytl"], p["xbr"], p["ybr"], p["rotation"])
        elif kind == "polygon":
            pts = rng.uniform([0, 0], [W, H], size=(6, 2))
            p = dict(points=[tuple(v) for v in pts])
            ref = crossing_ref(pts)
        else:
            m = rng.random((7, 9)) > 0.4
            m[0, 0] = False
            left, top = int(rng.integers(0, W - 9)), int(rng.integers(0, H - 7))
            p = dict(rle=_encode_rle(m), left=left, top=top, width=9, height=7)
            ref = np.zeros((H, W), bool)
            ref[top : top + 7, left : left + 9] = m
        shapes.append(
            {
                "type": kind,
                "label": label,
                "z_order": z,
                "occluded": k % 3 == 0,
                "attributes": {"n": k},
            }
            | p
        )
        refs.append((z, k, label, ref))
    write_cvat_xml(tmp_path / "a.xml", ["a", "b"], [("img.png", W, H, shapes)])
    convert(tmp_path / "a.xml", tmp_path / "a.zarr", params={"read_images": False})
    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")
    exp_sem = np.zeros((H, W), np.uint8)
    exp_inst = np.zeros((H, W), np.uint32)
    ids = {}
    for _z, k, _label, ref in refs:
        if ref.any():
            ids[k] = len(ids) + 1
    for _z, k, label, ref in sorted(refs, key=lambda r: (r[0], r[1])):
        exp_sem[ref] = 1 if label == "a" else 2
        if k in ids:
            exp_inst[ref] = ids[k]
    np.testing.assert_array_equal(g["semantic"][0], exp_sem)
    np.testing.assert_array_equal(g["instances"][0], exp_inst)
    rows = read_objects(tmp_path / "a.zarr")
    assert [r["area"] for r in rows] == [int((exp_inst == i).sum()) for i in range(1, len(ids) + 1)]
    assert rows[0]["attributes"] == {"n": "0"} and rows[0]["occluded"] == 1
    t = targets(tmp_path / "a.zarr", 0)
    assert t["boxes"].dtype.is_floating_point and str(t["boxes"].dtype) == "torch.float32"
    assert str(t["labels"].dtype) == "torch.int64" and str(t["masks"].dtype) == "torch.uint8"
    b = t["boxes"].numpy()
    assert ((0 <= b[:, 0]) & (b[:, 0] < b[:, 2]) & (b[:, 2] <= W)).all()
    assert ((0 <= b[:, 1]) & (b[:, 1] < b[:, 3]) & (b[:, 3] <= H)).all()
    visible = [r for r in rows if r["area"] > 0]
    assert b.tolist() == [[r["x1"], r["y1"], r["x2"], r["y2"]] for r in visible]
    assert t["labels"].tolist() == [r["class_id"] for r in visible]
    np.testing.assert_array_equal(t["masks"].numpy().sum(axis=(1, 2)), [r["area"] for r in visible])


def test_targets_single_pixel_and_empty() -> None:
    sem = np.zeros((4, 5), np.uint8)
    inst = np.zeros((4, 5), np.uint32)
    t = targets_from_arrays(sem, inst)
    assert t["boxes"].shape == (0, 4) and t["masks"].shape == (0, 4, 5)
    sem[2, 3], inst[2, 3] = 7, 5
    t = targets_from_arrays(sem, inst)
    assert t["boxes"].tolist() == [[3.0, 2.0, 4.0, 3.0]] and t["labels"].tolist() == [7]


def test_many_overlaps_match_sequential_painting() -> None:
    rng = np.random.default_rng(11)
    shapes, exp = [], np.zeros((H, W), np.uint32)
    for k in range(200):
        x0, y0 = rng.uniform(-5, W), rng.uniform(-5, H)
        p = (x0, y0, x0 + rng.uniform(1, 30), y0 + rng.uniform(1, 30))
        shapes.append(
            Shape(kind="box", label="a", order=k, params=p, z_order=int(rng.integers(-3, 4)))
        )
    _, inst, _ = raster(shapes)
    ids = {}
    for s in shapes:  # instance ids in document order among shapes covering a pixel
        ref, _ = rbox_ref(*s.params, 0.0)
        if ref.any():
            ids[s.order] = len(ids) + 1
    for s in sorted(shapes, key=lambda s: (s.z_order, s.order)):  # naive painter
        ref, _ = rbox_ref(*s.params, 0.0)
        if s.order in ids:
            exp[ref] = ids[s.order]
    np.testing.assert_array_equal(inst, exp)
