"""The blob table: one row of shape measurements per connected component."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from dlpipe.postprocess.components import Components
from dlpipe.stores.atomic import atomic_path

COLUMNS = [
    "id",
    "phase",
    "voxels",
    "z0",
    "y0",
    "x0",
    "z1",
    "y1",
    "x1",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "equivalent_diameter",
    "axis_major",
    "axis_medium",
    "axis_minor",
    "elongation",
    "orientation_z",
    "orientation_y",
    "orientation_x",
    "slices",
    "area_per_slice",
    "slenderness",
]


def blob_table(comp: Components) -> dict[str, np.ndarray]:
    """Shape measurements of every component (needs ``stats=True`` labelling), 3D volumes.

    Returns columns (arrays of length ``comp.count``, row i is id i + 1):
    bounding box ``z0..x1`` (half-open), centroid, ``equivalent_diameter`` = (6 V / pi)^(1/3),
    principal axis lengths ``axis_*`` = 4 sqrt(eigenvalue) of the covariance of voxel centres
    plus 1/12 per axis (each voxel counted as a unit cube, so a single voxel has axes of 1.15),
    ``elongation`` = major / minor, ``orientation_*`` the unit major axis (z, y, x),
    ``slices`` the number of z-slices spanned, ``area_per_slice`` = voxels / slices and
    ``slenderness`` = (in-plane bounding-box diagonal)^2 / area_per_slice (about 2.5 for a disc,
    4R/(pi w) for a ring of radius R and width w).
    """
    n = comp.count
    m = comp.moments[1:]
    bb = comp.bbox[1:]
    v = m[:, 0]
    mean = m[:, 1:4] / v[:, None]
    z, y, x = mean.T
    cov = np.empty((n, 3, 3))
    cov[:, 0, 0] = m[:, 4] / v - z * z
    cov[:, 1, 1] = m[:, 5] / v - y * y
    cov[:, 2, 2] = m[:, 6] / v - x * x
    cov[:, 0, 1] = cov[:, 1, 0] = m[:, 7] / v - z * y
    cov[:, 0, 2] = cov[:, 2, 0] = m[:, 8] / v - z * x
    cov[:, 1, 2] = cov[:, 2, 1] = m[:, 9] / v - y * x
    cov += np.eye(3) / 12.0
    evals, evecs = np.linalg.eigh(cov) if n else (np.zeros((0, 3)), np.zeros((0, 3, 3)))
    evals = np.clip(evals, 0, None)
    axes = 4.0 * np.sqrt(evals[:, ::-1])
    major = evecs[:, :, -1] if n else np.zeros((0, 3))
    major = major * np.where(major[:, :1] < 0, -1, 1)  # sign convention: z component >= 0
    slices = bb[:, 3] - bb[:, 0]
    area = v / np.maximum(slices, 1)
    diag2 = (bb[:, 4] - bb[:, 1]) ** 2 + (bb[:, 5] - bb[:, 2]) ** 2
    return {
        "id": np.arange(1, n + 1),
        "phase": comp.phase[1:],
        "voxels": comp.voxels[1:],
        "z0": bb[:, 0],
        "y0": bb[:, 1],
        "x0": bb[:, 2],
        "z1": bb[:, 3],
        "y1": bb[:, 4],
        "x1": bb[:, 5],
        "centroid_z": z,
        "centroid_y": y,
        "centroid_x": x,
        "equivalent_diameter": np.cbrt(6.0 * v / np.pi),
        "axis_major": axes[:, 0],
        "axis_medium": axes[:, 1],
        "axis_minor": axes[:, 2],
        "elongation": axes[:, 0] / axes[:, 2],
        "orientation_z": major[:, 0],
        "orientation_y": major[:, 1],
        "orientation_x": major[:, 2],
        "slices": slices,
        "area_per_slice": area,
        "slenderness": diag2 / area,
    }


def write_csv(
    path: str | Path,
    columns: dict[str, np.ndarray] | dict[str, list],
    *,
    overwrite: bool = False,
) -> None:
    """Write equal-length columns as CSV (floats with 6 significant digits), atomically.

    An existing ``path`` is replaced only with ``overwrite``.
    """
    names = list(columns)
    n = len(next(iter(columns.values()))) if names else 0
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        cols = [columns[k] for k in names]
        for i in range(n):
            w.writerow([_fmt(c[i]) for c in cols])


def _fmt(v: object) -> object:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    if isinstance(v, np.integer):
        return int(v)
    return v
