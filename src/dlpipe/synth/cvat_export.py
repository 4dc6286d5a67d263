"""Write annotated z-slices as a "CVAT for images 1.1" export, as a person would annotate them.

Coordinates follow CVAT: continuous pixel coordinates with the image's top-left
corner at (0, 0), so the pixel at row ``i``, column ``j`` has its centre at
``(x, y) = (j + 0.5, i + 0.5)``. Ellipse ``rotation`` is in degrees, clockwise on
screen (from +x towards +y, y pointing down), as CVAT stores it.

Image ``slice_0012.png`` is the volume's z-slice 12.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage import io as skio
from skimage import measure

from dlpipe.annotations.cvat.write import write_cvat_xml
from dlpipe.synth.phantom import FIBRE, PORE, Fibre

LABELS = (("fibre", "#3d9df3"), ("pore", "#fa3253"))


def slice_name(z: int) -> str:
    """File name of the annotated image of z-slice ``z``."""
    return f"slice_{z:04d}.png"


def _task(n_images: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``<task>`` children and the rest of ``<meta>`` of the export, as CVAT writes them."""
    now = _dt.datetime(2026, 1, 1, tzinfo=_dt.UTC).isoformat(sep=" ")  # fixed: determinism
    last = str(max(0, n_images - 1))
    task = {
        "id": "1",
        "name": "dlpipe synthetic glass-fibre composite",
        "size": str(n_images),
        "mode": "annotation",
        "overlap": "0",
        "bugtracker": "",
        "created": now,
        "updated": now,
        "subset": "default",
        "start_frame": "0",
        "stop_frame": last,
        "frame_filter": "",
        "labels": None,  # written here by write_cvat_xml
        "segments": {"segment": {"id": "1", "start": "0", "stop": last, "url": ""}},
        "owner": {"username": "dlpipe", "email": ""},
        "assignee": "",
    }
    return task, {"dumped": now}


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


def pore_shapes(pore_ids: np.ndarray) -> list[dict[str, Any]]:
    """One shape per pore of a 2D slice of the truth pore instances (0 background).

    A pore whose pixels are one 8-connected piece becomes a polygon traced as in
    :func:`pore_polygons`; a pore cut into several pieces (covered in part by a later pore)
    becomes one CVAT mask, so that every pore is one shape and ``dlpipe cvat`` gives one
    instance per pore. In ascending pore id.
    """
    out: list[dict[str, Any]] = []
    base = {"label": "pore", "source": "manual", "occluded": "0", "z_order": "1"}
    for region in measure.regionprops(pore_ids.astype(np.int64)):
        r0, c0, r1, c1 = region.bbox
        polys = pore_polygons(region.image)
        if measure.label(region.image, connectivity=2).max() == 1 and len(polys) == 1:
            poly = polys[0] + np.array([c0, r0], float)
            out.append({"type": "polygon", **base, "points": poly})
            continue
        mask = np.zeros(pore_ids.shape, bool)
        mask[r0:r1, c0:c1] = region.image
        out.append({"type": "mask", **base, "mask": mask})
    return out


def write_cvat_export(
    out_dir: Path,
    volume: Mapping[int, np.ndarray] | np.ndarray,
    labels: np.ndarray,
    fibres: Sequence[Fibre],
    slices: Sequence[int],
    pore_ids: Mapping[int, np.ndarray] | np.ndarray | None = None,
) -> Path:
    """Write ``out_dir/annotations.xml`` and ``out_dir/images/slice_ZZZZ.png``.

    Fibre cross-sections become rotated ellipses (exact: a tilted cylinder cuts a
    plane in an ellipse); pores are drawn on top (higher ``z_order``): one shape per pore
    of ``pore_ids`` (the truth pore instances, :func:`pore_shapes`), or without them one
    polygon per 8-connected piece of the pore mask.

    Parameters
    ----------
    volume : (z, y, x) uint8 or uint16, or {z: (y, x) slice} of at least ``slices``
    labels : (z, y, x) uint8
    fibres : the fibres of the phantom
    slices : z indices to annotate
    pore_ids : (z, y, x) uint32 truth pore instances, or {z: (y, x)} of at least ``slices``

    Returns
    -------
    Path of ``annotations.xml``.
    """
    _, ny, nx = labels.shape
    (out_dir / "images").mkdir(parents=True, exist_ok=True)

    def images() -> Iterator[tuple[str, int, int, list[dict[str, Any]]]]:
        for z in slices:
            name = slice_name(z)
            skio.imsave(out_dir / "images" / name, volume[z], check_contrast=False)
            yield name, nx, ny, _shapes(labels, fibres, z, pore_ids)

    task, meta = _task(len(slices))
    return write_cvat_xml(
        out_dir / "annotations.xml",
        [{"name": n, "color": c, "type": "any", "attributes": ""} for n, c in LABELS],
        images(),
        task=task,
        meta=meta,
        number=_fmt,
        pretty=True,
    )


def _shapes(
    labels: np.ndarray, fibres: Sequence[Fibre], z: int, pore_ids: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Fibre ellipses (z_order 0), then the pores on top (z_order 1), of z-slice ``z``."""
    _, ny, nx = labels.shape
    shapes: list[dict[str, Any]] = []
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
        shapes.append(
            {
                "type": "ellipse",
                "label": "fibre",
                "source": "manual",
                "occluded": "0",
                "cx": cx + 0.5,
                "cy": cy + 0.5,
                "rx": a,
                "ry": b,
                "rotation": float(np.rad2deg(angle)) % 360.0,
                "z_order": "0",
            }
        )
    if pore_ids is not None:
        return shapes + pore_shapes(pore_ids[z])
    for poly in pore_polygons(labels[z] == PORE):
        shapes.append(
            {
                "type": "polygon",
                "label": "pore",
                "source": "manual",
                "occluded": "0",
                "points": poly,
                "z_order": "1",
            }
        )
    return shapes
