"""×2 downsampling for the multiscale pyramid: mean for images, mode for labels.

Odd sizes round up (150 → 75 → 38 → 19): the last block along an odd axis holds one
voxel and is averaged (or voted) over what it holds.
"""

from __future__ import annotations

import numpy as np


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """Shapes of the pyramid levels 0..levels-1, each ceil(half) of the one before."""
    out = [tuple(int(s) for s in shape)]
    for _ in range(levels - 1):
        out.append(tuple((s + 1) // 2 for s in out[-1]))
    return out


def _pad_even(a: np.ndarray) -> np.ndarray:
    pad = [(0, s % 2) for s in a.shape]
    return np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a


def downsample_mean(a: np.ndarray) -> np.ndarray:
    """Mean of each 2×2×2 block.

    Parameters
    ----------
    a : ndarray, shape (z, y, x), uint8/uint16/int16/float32

    Returns
    -------
    ndarray, shape (ceil(z/2), ceil(y/2), ceil(x/2)), same dtype (integers rounded half
    up).
    """
    a = _pad_even(a)
    if a.dtype == np.float32:
        # the mean of pairs, one axis at a time (halves first: a sum of values near the
        # float32 maximum would overflow to inf)
        half = np.float32(0.5)
        s = a[0::2] * half
        s += a[1::2] * half
        s = s[:, 0::2] * half + s[:, 1::2] * half
        return s[:, :, 0::2] * half + s[:, :, 1::2] * half
    acc = np.uint16 if a.dtype == np.uint8 else np.int32  # 8 values cannot overflow these
    # sum pairs one axis at a time: the biggest temporary is half the input
    s = a[0::2].astype(acc)
    s += a[1::2]
    s = s[:, 0::2] + s[:, 1::2]
    s = s[:, :, 0::2] + s[:, :, 1::2]
    s += 4  # integer mean rounded half up: floor((sum + 4) / 8)
    s >>= 3
    return s.astype(a.dtype)


def downsample_mode(a: np.ndarray) -> np.ndarray:
    """Most frequent label of each 2×2×2 block (ties: the smallest label).

    Parameters
    ----------
    a : ndarray, shape (z, y, x), integer labels

    Returns
    -------
    ndarray, shape (ceil(z/2), ceil(y/2), ceil(x/2)), same dtype.
    """
    a = _pad_even(a)
    z, y, x = a.shape
    blocks = a.reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    values = np.unique(a)
    best = np.full((z // 2, y // 2, x // 2), values[0], dtype=a.dtype)
    best_count = np.zeros(best.shape, dtype=np.uint8)
    for v in values:
        c = (blocks == v).sum(axis=(1, 3, 5), dtype=np.uint8)
        better = c > best_count
        best[better] = v
        best_count[better] = c[better]
    return best
