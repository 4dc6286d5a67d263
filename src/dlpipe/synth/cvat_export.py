"""Write annotated z-slices as a "CVAT for images 1.1" export, as a person would annotate them.

Coordinates follow CVAT: continuous pixel coordinates with the image's top-left
corner at (0, 0), so the pixel at row ``i``, column ``j`` has its centre at
``(x, y) = (j + 0.5, i + 0.5)``. Ellipse ``rotation`` is in degrees, clockwise on
screen (from +x towards +y, y pointing down), as CVAT stores it.

Image ``slice_0012.png`` is the volume's z-slice 12.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from lxml import etree
from skimage import io as skio
from skimage import measure

from dlpipe.synth.phantom import FIBRE, PORE, Fibre

LABELS = (("fibre", "#3d9df3"), ("pore", "#fa3253"))


def slice_name(z: int) -> str:
    """File name of the annotated image of z-slice ``z``."""
    return f"slice_{z:04d}.png"


def _sub(
    parent: etree._Element, tag: str, text: str | None = None, **attrib: str
) -> etree._Element:
    el = etree.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        el.text = text
    return el


def _meta(root: etree._Element, n_images: int, shape_yx: tuple[int, int]) -> None:
    now = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC).isoformat(sep=" ")  # fixed: determinism
    meta = _sub(root, "meta")
    task = _sub(meta, "task")
    for tag, text in (
        ("id", "1"),
        ("name", "dlpipe synthetic glass-fibre composite"),
        ("size", str(n_images)),
        ("mode", "annotation"),
        ("overlap", "0"),
        ("bugtracker", ""),
        ("created", now),
        ("updated", now),
        ("subset", "default"),
        ("start_frame", "0"),
        ("stop_frame", str(max(0, n_images - 1))),
        ("frame_filter", ""),
    ):
        _sub(task, tag, text)
    labels = _sub(task, "labels")
    for name, colour in LABELS:
        lab = _sub(labels, "label")
        _sub(lab, "name", name)
        _sub(lab, "color", colour)
        _sub(lab, "type", "any")
        _sub(lab, "attributes", "")
    segments = _sub(task, "segments")
    seg = _sub(segments, "segment")
    _sub(seg, "id", "1")
    _sub(seg, "start", "0")
    _sub(seg, "stop", str(max(0, n_images - 1)))
    _sub(seg, "url", "")
    owner = _sub(task, "owner")
    _sub(owner, "username", "dlpipe")
    _sub(owner, "email", "")
    _sub(task, "assignee", "")
    _sub(meta, "dumped", now)


def _fmt(v: float) -> str:
    return f"{v:.2f}"


def _ellipse_visible(cy: float, cx: float, a: float, ny: int, nx: int) -> bool:
    return -a <= cy <= ny + a and -a <= cx <= nx + a


def pore_polygons(pore_mask: np.ndarray) -> list[np.ndarray]:
    """Outline each 8-connected pore of a 2D mask as a polygon in CVAT (x, y) coordinates.

    The outline is the 0.5 iso-contour between pixel centres, so each pore pixel's
    centre lies inside it and each other pixel's centre outside.

    Returns
    -------
    list of (n, 2) float arrays of (x, y) vertices
    """
    out = []
    comps = measure.label(pore_mask, connectivity=2)
    for region in measure.regionprops(comps):
        r0, c0, _, _ = region.bbox
        sub = np.pad(region.image.astype(float), 1)
        contours = measure.find_contours(sub, 0.5)
        if not contours:
            continue
        contour = max(contours, key=len)
        contour = measure.approximate_polygon(contour, tolerance=0.25)[:-1]  # drop closing pt
        if len(contour) < 3:
            continue
        rows = contour[:, 0] - 1 + r0
        cols = contour[:, 1] - 1 + c0
        out.append(np.stack([cols + 0.5, rows + 0.5], axis=1))
    return out


def write_cvat_export(
    out_dir: Path,
    volume: np.ndarray,
    labels: np.ndarray,
    fibres: Sequence[Fibre],
    slices: Sequence[int],
) -> Path:
    """Write ``out_dir/annotations.xml`` and ``out_dir/images/slice_ZZZZ.png``.

    Fibre cross-sections become rotated ellipses (exact: a tilted cylinder cuts a
    plane in an ellipse); pores become polygons traced from the pore mask, drawn on
    top (higher ``z_order``).

    Parameters
    ----------
    volume : (z, y, x) uint8 or uint16
    labels : (z, y, x) uint8
    fibres : the fibres of the phantom
    slices : z indices to annotate

    Returns
    -------
    Path of ``annotations.xml``.
    """
    _, ny, nx = labels.shape
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    root = etree.Element("annotations")
    _sub(root, "version", "1.1")
    _meta(root, len(slices), (ny, nx))
    for image_id, z in enumerate(slices):
        name = slice_name(z)
        skio.imsave(out_dir / "images" / name, volume[z], check_contrast=False)
        img = _sub(root, "image", id=image_id, name=name, width=nx, height=ny)
        for fibre in fibres:
            if fibre.direction[0] <= 1e-3:
                continue
            cy, cx, a, b, angle = fibre.cross_section(z)
            if not _ellipse_visible(cy, cx, a, ny, nx):
                continue
            # Only fibres that actually show up in the slice (pores may cover small ones).
            yy, xx = int(round(cy)), int(round(cx))
            if 0 <= yy < ny and 0 <= xx < nx and labels[z, yy, xx] not in (FIBRE, PORE):
                continue
            _sub(
                img,
                "ellipse",
                label="fibre",
                source="manual",
                occluded="0",
                cx=_fmt(cx + 0.5),
                cy=_fmt(cy + 0.5),
                rx=_fmt(a),
                ry=_fmt(b),
                rotation=_fmt(float(np.rad2deg(angle)) % 360.0),
                z_order="0",
            )
        for poly in pore_polygons(labels[z] == PORE):
            points = ";".join(f"{x:.2f},{y:.2f}" for x, y in poly)
            _sub(
                img,
                "polygon",
                label="pore",
                source="manual",
                occluded="0",
                points=points,
                z_order="1",
            )
    path = out_dir / "annotations.xml"
    etree.ElementTree(root).write(
        str(path), xml_declaration=True, encoding="utf-8", pretty_print=True
    )
    return path
