"""Sliding windows, the Gaussian importance map and the block layout with halos."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def window_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of windows of size ``patch`` covering ``[0, length)``.

    The step is ``int(patch * (1 - overlap))`` (at least 1) and the last window is
    snapped to the end, as MONAI's ``sliding_window_inference`` does. ``length`` must be
    at least ``patch``.
    """
    if length < patch:
        raise ValueError(f"length {length} is smaller than the window {patch}")
    step = max(1, int(patch * (1.0 - overlap)))
    starts = list(range(0, length - patch + 1, step))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def gaussian_map(patch: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian importance weights of one window.

    Parameters
    ----------
    patch : window shape, (y, x) or (z, y, x)
    sigma_scale : sigma per axis as a fraction of the window side (0.125 as in MONAI and
        nnU-Net)

    Returns
    -------
    numpy.ndarray, float32, shape ``patch``
        Separable Gaussian centred on the window, peak 1, smallest value clamped to
        ``1e-3`` of the peak so that every voxel of a window keeps some weight.
    """
    w = np.ones((), dtype=np.float64)
    for n in patch:
        c = (n - 1) / 2.0
        s = max(n * sigma_scale, 1e-6)
        g = np.exp(-0.5 * ((np.arange(n) - c) / s) ** 2)
        w = np.multiply.outer(w, g)
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


def block_grid(shape: Sequence[int], block: Sequence[int]) -> list[tuple[int, ...]]:
    """Indices of the output blocks of a (z, y, x) volume tiled by ``block``, in C order."""
    counts = [-(-int(s) // int(b)) for s, b in zip(shape, block, strict=True)]
    return list(itertools.product(*(range(c) for c in counts)))


def block_bounds(
    index: Sequence[int], shape: Sequence[int], block: Sequence[int]
) -> tuple[tuple[int, int], ...]:
    """Half-open (start, stop) per axis of output block ``index`` (clipped to the volume)."""
    return tuple((i * b, min((i + 1) * b, s)) for i, s, b in zip(index, shape, block, strict=True))
