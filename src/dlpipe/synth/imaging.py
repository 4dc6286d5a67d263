"""A simple X-ray CT imaging model: attenuation, blur, ring artefacts, noise, quantisation.

The image is made slab by slab along z (:func:`ct_pages`), so a scan of any size needs
memory for the phase volume (one byte per voxel) and one slab, not several float copies
of the whole volume. The slabs give the same image as one pass over the whole volume:
the blur reads a halo of its reach around each slab, and the random draws (Poisson, then
Gaussian) follow the same order, the Poisson counts waiting in a scratch file.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

SLAB_VOXELS = 1 << 23  # voxels per slab (8 Mi): a few hundred MB of float temporaries
_TRUNCATE = 4.0  # scipy's gaussian_filter default: the blur reaches int(4 sigma + 0.5)


@dataclass(frozen=True)
class Ring:
    """One ring artefact: radius, offset profile (y, x) and the z-slices [z0, z1) it spans."""

    profile: np.ndarray
    z0: int
    z1: int


def ring_artefacts(
    shape: tuple[int, int, int], rng: np.random.Generator, *, count: int, amplitude: float
) -> list[Ring]:
    """Draw ``count`` ring artefacts about the rotation axis (the z axis through the centre).

    A faulty detector column gives a ring of fixed radius in every slice that the
    faulty rows reconstruct, so each ring keeps its radius over a contiguous run of
    slices.
    """
    nz, ny, nx = shape
    if count == 0 or amplitude == 0:
        return []
    yy, xx = np.mgrid[0:ny, 0:nx]
    radius = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2).astype(np.float32)
    r_max = min(ny, nx) / 2 - 2
    rings = []
    for _ in range(count):
        r0 = rng.uniform(4, max(5.0, r_max))
        width = rng.uniform(0.6, 1.5)
        amp = amplitude * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0], p=[0.7, 0.3])
        length = rng.integers(max(1, nz // 5), nz + 1)
        z0 = int(rng.integers(0, nz - length + 1))
        profile = amp * np.exp(-((radius - r0) ** 2) / (2 * width**2))
        rings.append(Ring(profile, z0, z0 + int(length)))
    return rings


def _ring_slab(rings: list[Ring], z0: int, z1: int, plane: tuple[int, int]) -> np.ndarray:
    """The summed ring offsets of slices [z0, z1), float32."""
    out = np.zeros((z1 - z0, *plane), np.float32)
    for ring in rings:
        a, b = max(z0, ring.z0), min(z1, ring.z1)
        if a < b:
            out[a - z0 : b - z0] += ring.profile
    return out


def ring_pattern(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    *,
    count: int,
    amplitude: float,
) -> np.ndarray:
    """Ring artefacts of the whole volume: (z, y, x) float32 additive offsets (0-1 scale)."""
    rings = ring_artefacts(shape, rng, count=count, amplitude=amplitude)
    return _ring_slab(rings, 0, shape[0], shape[1:])


def _attenuation(
    labels: np.ndarray,
    z0: int,
    z1: int,
    levels: np.ndarray,
    blur_sigma: float,
    rings: list[Ring],
) -> np.ndarray:
    """Blurred attenuation plus rings of slices [z0, z1), clipped at 0 (float32)."""
    halo = int(_TRUNCATE * blur_sigma + 0.5) if blur_sigma > 0 else 0
    h0, h1 = max(0, z0 - halo), min(labels.shape[0], z1 + halo)
    att = levels[labels[h0:h1]]
    if blur_sigma > 0:
        att = ndimage.gaussian_filter(att, blur_sigma, truncate=_TRUNCATE)
    att = att[z0 - h0 : z0 - h0 + (z1 - z0)]
    att += _ring_slab(rings, z0, z1, labels.shape[1:])
    np.clip(att, 0, None, out=att)
    return att


def _slabs(shape: tuple[int, ...], slab_voxels: int) -> list[tuple[int, int]]:
    step = max(1, slab_voxels // max(1, shape[1] * shape[2]))
    return [(z, min(shape[0], z + step)) for z in range(0, shape[0], step)]


def ct_pages(
    labels: np.ndarray,
    rng: np.random.Generator,
    scratch: str | Path,
    *,
    grey_levels: tuple[float, float, float] = (0.45, 0.75, 0.12),
    blur_sigma: float = 1.0,
    photons: float = 400.0,
    noise_sigma: float = 0.02,
    rings: int = 6,
    ring_amplitude: float = 0.12,
    dtype: str = "uint8",
    slab_voxels: int = SLAB_VOXELS,
) -> Iterator[np.ndarray]:
    """Simulate a reconstructed CT volume from a phase volume, slab by slab.

    One grey level per phase, Gaussian blur (the point-spread function), ring
    artefacts, Poisson (photon) and Gaussian (detector) noise, then quantisation to
    the full range of ``dtype``. All random draws happen in this generator, in the
    order of one whole-volume pass.

    Parameters
    ----------
    labels : (z, y, x) integer array
        Phase of each voxel (0, 1, 2).
    rng : numpy Generator
    scratch : folder for the Poisson counts between the two passes (4 bytes a voxel;
        the file is deleted when the generator finishes or is closed)
    slab_voxels : voxels per slab (memory: a few float32 copies of one slab)

    Yields
    ------
    (k, y, x) arrays of ``dtype``: consecutive z-slabs of the image
    """
    levels = np.asarray(grey_levels, np.float32)
    artefacts = ring_artefacts(labels.shape, rng, count=rings, amplitude=ring_amplitude)
    slabs = _slabs(labels.shape, slab_voxels)
    info = np.iinfo(np.dtype(dtype))
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".counts-") as tmp:
        path = Path(tmp) / "counts.f32"
        with path.open("wb") as f:  # pass 1: every Poisson draw, in volume order
            for z0, z1 in slabs:
                att = _attenuation(labels, z0, z1, levels, blur_sigma, artefacts)
                rng.poisson(att * photons).astype(np.float32).tofile(f)
        plane = labels.shape[1] * labels.shape[2]
        for z0, z1 in slabs:  # pass 2: every Gaussian draw, then quantisation
            counts = np.fromfile(
                path, np.float32, count=(z1 - z0) * plane, offset=4 * z0 * plane
            ).reshape(z1 - z0, *labels.shape[1:])
            img = counts / photons
            if noise_sigma > 0:
                img += rng.normal(0, noise_sigma, img.shape).astype(np.float32)
            yield np.clip(np.rint(img * info.max), 0, info.max).astype(dtype)


def ct_image(
    labels: np.ndarray,
    rng: np.random.Generator,
    **imaging: object,
) -> np.ndarray:
    """The whole CT volume of :func:`ct_pages` as one (z, y, x) array of ``dtype``."""
    with tempfile.TemporaryDirectory(prefix="dlpipe-synth-") as scratch:
        return np.concatenate(list(ct_pages(labels, rng, scratch, **imaging)))  # type: ignore[arg-type]
