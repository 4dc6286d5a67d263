"""Phase volumes of a glass-fibre-reinforced polymer: straight fibres and ellipsoidal pores.

Phases: 0 matrix, 1 fibre, 2 pore. Coordinates are voxel indices (z, y, x); a voxel
belongs to a shape when its centre does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

MATRIX, FIBRE, PORE = 0, 1, 2
PHASES = ("matrix", "fibre", "pore")


@dataclass(frozen=True)
class Fibre:
    """An infinite straight cylinder.

    Attributes
    ----------
    point : (3,) float
        A point on the axis, (z, y, x) voxel coordinates.
    direction : (3,) float
        Unit axis direction (z, y, x), with ``direction[0] >= 0``.
    radius : float
        Radius in voxels.
    """

    point: np.ndarray
    direction: np.ndarray
    radius: float

    def centre_at(self, z: float) -> tuple[float, float]:
        """(y, x) of the axis in the plane ``z``; needs ``direction[0] > 0``."""
        t = (z - self.point[0]) / self.direction[0]
        c = self.point + t * self.direction
        return float(c[1]), float(c[2])

    def cross_section(self, z: float) -> tuple[float, float, float, float, float]:
        """Ellipse cut by the plane ``z``: (cy, cx, semi-axis a, semi-axis b, angle).

        ``a`` lies along the in-plane projection of the axis at ``angle`` radians from
        +x towards +y (y down, so clockwise on screen); ``b`` equals the radius.
        """
        cy, cx = self.centre_at(z)
        uz, uy, ux = self.direction
        a = self.radius / uz
        angle = float(np.arctan2(uy, ux)) if np.hypot(uy, ux) > 1e-9 else 0.0
        return cy, cx, float(a), float(self.radius), angle


@dataclass(frozen=True)
class Pore:
    """An ellipsoid: centre (z, y, x), semi-axes (3,), rotation matrix (3, 3)."""

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n == 0:
        raise ValueError("fibre_direction must not be the zero vector")
    return v / n


def _misaligned(preferred: np.ndarray, spread_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at angle |N(0, spread)| from ``preferred``, uniform azimuth."""
    v = _unit(preferred)
    helper = np.array([0.0, 0.0, 1.0]) if abs(v[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(v, helper))
    e2 = np.cross(v, e1)
    theta = np.deg2rad(abs(rng.normal(0.0, spread_deg))) if spread_deg > 0 else 0.0
    phi = rng.uniform(0, 2 * np.pi)
    u = np.cos(theta) * v + np.sin(theta) * (np.cos(phi) * e1 + np.sin(phi) * e2)
    return u if u[0] >= 0 else -u


def _line_distance2(points: np.ndarray, fibre: Fibre) -> np.ndarray:
    """Squared distance of ``points`` (..., 3) to the fibre's axis."""
    w = points - fibre.point
    along = w @ fibre.direction
    return np.einsum("...i,...i->...", w, w) - along**2


def render_fibre(labels: np.ndarray, fibre: Fibre, value: int = FIBRE) -> int:
    """Paint ``fibre`` into ``labels`` (z, y, x) in place; return the number of new voxels."""
    nz, ny, nx = labels.shape
    r2 = fibre.radius**2
    uz = fibre.direction[0]
    added = 0
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    for z in range(nz):
        if uz > 0.2:  # a bounded window around the axis
            cy, cx = fibre.centre_at(z)
            half = fibre.radius / uz + 1.5
            y0, y1 = max(0, int(np.floor(cy - half))), min(ny, int(np.ceil(cy + half)) + 1)
            x0, x1 = max(0, int(np.floor(cx - half))), min(nx, int(np.ceil(cx + half)) + 1)
            if y0 >= y1 or x0 >= x1:
                continue
        else:
            y0, y1, x0, x1 = 0, ny, 0, nx
        pts = np.stack(
            [np.full((y1 - y0, x1 - x0), z, np.float32), yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]],
            axis=-1,
        )
        inside = _line_distance2(pts, fibre) <= r2
        window = labels[z, y0:y1, x0:x1]
        new = inside & (window != value)
        added += int(new.sum())
        window[inside] = value
    return added


def render_pore(
    labels: np.ndarray, pore: Pore, value: int = PORE, origin: tuple[int, int, int] = (0, 0, 0)
) -> int:
    """Paint ``pore`` into ``labels`` in place; return the number of newly painted voxels.

    ``origin`` is the scan index of ``labels[0, 0, 0]`` (``labels`` a slab of the scan).
    """
    reach = float(pore.semi_axes.max()) + 1
    start = np.asarray(origin, int)
    lo = np.maximum(np.floor(pore.centre - reach).astype(int), start)
    hi = np.minimum(np.ceil(pore.centre + reach).astype(int) + 1, start + labels.shape)
    if np.any(lo >= hi):
        return 0
    grid = np.stack(
        np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij"), -1
    ).astype(np.float64)
    local = (grid - pore.centre) @ pore.rotation  # coordinates in the ellipsoid's frame
    inside = np.sum((local / pore.semi_axes) ** 2, axis=-1) <= 1.0
    a, b = lo - start, hi - start
    window = labels[a[0] : b[0], a[1] : b[1], a[2] : b[2]]
    new = inside & (window != value)
    window[inside] = value
    return int(new.sum())


def pore_instances(shape: tuple[int, int, int], pores: list[Pore]) -> np.ndarray:
    """The truth pore instances: pore ``k`` of ``pores`` (1-based) painted with id ``k``.

    Pores are painted in their order, as in :func:`fibre_composite`, so a later pore wins
    where two overlap and the non-zero voxels are exactly the pore phase. A pore wholly
    covered by later ones has no voxel (its id is absent). uint32 (z, y, x).
    """
    ids = np.zeros(shape, np.uint32)
    for k, pore in enumerate(pores, 1):
        render_pore(ids, pore, value=k)
    return ids


def pore_instance_slabs(
    shape: tuple[int, int, int], pores: list[Pore], depth: int = 32
) -> Iterator[np.ndarray]:
    """:func:`pore_instances` as (≤ depth, y, x) uint32 z-slabs, top to bottom.

    The same ids voxel for voxel, in the memory of one slab (a 1024³ scan's ids are 4 GB).
    """
    nz = shape[0]
    for z0 in range(0, nz, depth):
        z1 = min(z0 + depth, nz)
        slab = np.zeros((z1 - z0, *shape[1:]), np.uint32)
        for k, pore in enumerate(pores, 1):
            render_pore(slab, pore, value=k, origin=(z0, 0, 0))
        yield slab


def fibre_composite(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    *,
    fibre_fraction: float = 0.17,
    fibre_diameter: float = 10.0,
    fibre_direction: tuple[float, float, float] = (1.0, 0.0, 0.0),
    fibre_angle_spread: float = 8.0,
    pore_fraction: float = 0.0075,
    pore_radius: tuple[float, float] = (2.0, 5.0),
) -> tuple[np.ndarray, list[Fibre], list[Pore]]:
    """Make the phase volume of a fibre composite.

    Fibres are added at random positions (kept at least a diameter apart at the point
    where they are placed) until the fibre volume fraction is reached; then pores are
    added, mostly in the matrix, until the pore fraction is reached. Pores win where
    they overlap fibres.

    Parameters
    ----------
    shape : (z, y, x)
    rng : numpy Generator
        The only source of randomness: the same seed gives the same volume.

    Returns
    -------
    labels : (z, y, x) uint8
        0 matrix, 1 fibre, 2 pore.
    fibres, pores : lists of :class:`Fibre` and :class:`Pore`
    """
    labels = np.zeros(shape, np.uint8)
    total = labels.size
    # placement attempts grow with the volume, so big scans reach the fractions too (a fixed
    # 20000 left a 1024³ scan at 0.28 % pores); every loop stops at its fraction before that
    attempts = max(20000, total // 50)
    dims = np.asarray(shape, float)
    r = fibre_diameter / 2
    fibres: list[Fibre] = []
    n_fibre = 0
    for _ in range(attempts):
        if n_fibre >= fibre_fraction * total:
            break
        point = rng.uniform(0, 1, 3) * (dims - 1)
        fibre = Fibre(
            point, _misaligned(np.asarray(fibre_direction, float), fibre_angle_spread, rng), r
        )
        if any(_line_distance2(point, f) < (2 * r + 1) ** 2 for f in fibres):
            continue
        n_fibre += render_fibre(labels, fibre)
        fibres.append(fibre)

    pores: list[Pore] = []
    n_pore = 0
    lo, hi = pore_radius
    for _ in range(attempts):
        if n_pore >= pore_fraction * total:
            break
        centre = rng.uniform(0, 1, 3) * (dims - 1)
        ci = tuple(np.round(centre).astype(int))
        if labels[ci] == FIBRE and rng.uniform() < 0.9:
            continue  # mostly in the matrix, some at fibre surfaces
        pore = Pore(centre, rng.uniform(lo, hi, 3), Rotation.random(rng=rng).as_matrix())
        n_pore += render_pore(labels, pore)
        pores.append(pore)
    return labels, fibres, pores
