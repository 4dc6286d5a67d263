"""A simple X-ray CT imaging model: attenuation, blur, ring artefacts, noise, quantisation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def ring_pattern(
    shape: tuple[int, int, int],
    rng: np.random.Generator,
    *,
    count: int,
    amplitude: float,
) -> np.ndarray:
    """Ring artefacts: concentric rings about the rotation axis (the z axis through the centre).

    A faulty detector column gives a ring of fixed radius in every slice that the
    faulty rows reconstruct, so each ring keeps its radius over a contiguous run of
    slices.

    Returns
    -------
    (z, y, x) float32
        Additive offsets on the 0-1 attenuation scale.
    """
    nz, ny, nx = shape
    out = np.zeros(shape, np.float32)
    if count == 0 or amplitude == 0:
        return out
    yy, xx = np.mgrid[0:ny, 0:nx]
    radius = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2).astype(np.float32)
    r_max = min(ny, nx) / 2 - 2
    for _ in range(count):
        r0 = rng.uniform(4, max(5.0, r_max))
        width = rng.uniform(0.6, 1.5)
        amp = amplitude * rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0], p=[0.7, 0.3])
        length = rng.integers(max(1, nz // 5), nz + 1)
        z0 = rng.integers(0, nz - length + 1)
        profile = amp * np.exp(-((radius - r0) ** 2) / (2 * width**2))
        out[z0 : z0 + length] += profile
    return out


def ct_image(
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    grey_levels: tuple[float, float, float] = (0.45, 0.75, 0.12),
    blur_sigma: float = 1.0,
    photons: float = 400.0,
    noise_sigma: float = 0.02,
    rings: int = 6,
    ring_amplitude: float = 0.12,
    dtype: str = "uint8",
) -> np.ndarray:
    """Simulate a reconstructed CT volume from a phase volume.

    One grey level per phase, Gaussian blur (the point-spread function), ring
    artefacts, Poisson (photon) and Gaussian (detector) noise, then quantisation to
    the full range of ``dtype``.

    Parameters
    ----------
    labels : (z, y, x) integer array
        Phase of each voxel (0, 1, 2).
    rng : numpy Generator

    Returns
    -------
    (z, y, x) array of ``dtype`` (uint8 or uint16)
    """
    levels = np.asarray(grey_levels, np.float32)
    att = levels[labels]
    if blur_sigma > 0:
        att = ndimage.gaussian_filter(att, blur_sigma)
    att += ring_pattern(labels.shape, rng, count=rings, amplitude=ring_amplitude)
    np.clip(att, 0, None, out=att)
    counts = rng.poisson(att * photons).astype(np.float32)
    img = counts / photons
    if noise_sigma > 0:
        img += rng.normal(0, noise_sigma, img.shape).astype(np.float32)
    info = np.iinfo(np.dtype(dtype))
    return np.clip(np.rint(img * info.max), 0, info.max).astype(dtype)
