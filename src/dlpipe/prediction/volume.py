"""Reading the input volume: fit checks, statistics, halo reads with mirror padding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe import stores
from dlpipe.errors import UserError
from dlpipe.stores.chunks import check_missing_chunks, read_checked


@dataclass
class VolumeInfo:
    """The image level predicted: its path, shape (z, y, x), voxel scale, normalisation.

    ``array`` is the opened image array ((z, y, x), or (y, x) when ``squeeze_z``), ``unit``
    the unit of its axes (None when the volume names none).
    """

    path: Path
    level: str
    shape: tuple[int, int, int]
    dtype: str
    scale: list[float]
    p0_1: float
    p99_9: float
    squeeze_z: bool  # a 2D image (y, x) seen as one z-slice
    array: zarr.Array
    unit: str | None = None


def open_volume(
    path: str | Path,
    mode: str,
    card: dict[str, Any],
    level: str = "0",
    *,
    strict: bool | None = False,
) -> VolumeInfo:
    """Open ``VOL.zarr`` and check that a model with input ``mode`` can predict it.

    Chunks absent from the image array are reported (:func:`check_missing_chunks`):
    an error for a volume from ``dlpipe tile`` (which stores every chunk) or with
    ``strict``, else a warning; ``strict=None`` skips the check (a worker reopening the
    volume that was checked already).

    Raises
    ------
    UserError
        Not a complete tiled volume, an axis the model cannot take (channels, a 2D/2.5D
        model on a 3D input without a z axis to slice along, a 3D model on a 2D image),
        or no normalisation statistics in the card nor in the volume.
    """
    vol = stores.open_volume(path, level=level)
    path, arr = vol.path, vol.image
    if strict is not None:
        check_missing_chunks(arr, path, strict=strict)
    axes = vol.axes
    if not axes:
        axes = (
            ["z", "y", "x"][-arr.ndim :] if arr.ndim <= 3 else [f"dim_{i}" for i in range(arr.ndim)]
        )
    if len(axes) != arr.ndim:
        raise UserError(f"axes {axes} do not match the image's {arr.ndim} dimensions", path=path)
    if "c" in axes:
        n = arr.shape[axes.index("c")]
        raise UserError(
            f"channels do not fit: the volume has a channel axis ({n} channels) but the model "
            "takes one-channel (z, y, x) volumes",
            path=path,
        )
    squeeze = False
    if axes[-2:] != ["y", "x"]:
        raise UserError(f"volume axes {axes} do not end in (y, x)", path=path)
    if arr.ndim == 2:
        if mode == "3d":
            raise UserError("a 3D model cannot predict a 2D image (y, x)", path=path)
        squeeze = True
    elif arr.ndim == 3 and axes[0] != "z":
        raise UserError(
            f"a {mode} model on a 3D input needs a z axis to slice along; the volume's axes "
            f"are {axes}",
            path=path,
        )
    elif arr.ndim > 3:
        raise UserError(f"cannot predict a {arr.ndim}-D image with axes {axes}", path=path)
    norm = card.get("normalisation") or {}
    stats = vol.attrs.get("statistics") or {}
    if "p0_1" in norm and "p99_9" in norm:
        p0, p1 = float(norm["p0_1"]), float(norm["p99_9"])
    elif "p0_1" in stats and "p99_9" in stats:
        p0, p1 = float(stats["p0_1"]), float(stats["p99_9"])
    else:
        raise UserError(
            "missing statistics: neither the model card's normalisation nor the volume's "
            "dlpipe.statistics has p0_1 and p99_9",
            path=path,
        )
    if not p1 > p0:
        raise UserError(f"statistics p99_9 ({p1}) must exceed p0_1 ({p0}) to normalise", path=path)
    scale = ([1.0, 1.0, *vol.voxel_size])[-3:] if vol.voxel_size else [1.0] * 3
    shape = tuple(int(s) for s in ((1, *arr.shape) if squeeze else arr.shape))
    return VolumeInfo(path, level, shape, str(arr.dtype), scale, p0, p1, squeeze, arr, vol.unit)


def reflect_index(lo: int, hi: int, size: int) -> np.ndarray:
    """Indices ``lo..hi-1`` of an axis of length ``size`` mirrored into ``[0, size)``.

    The mirror excludes the edge voxel (numpy's ``np.pad(mode="reflect")``: index -1 maps
    to 1, ``size`` to ``size - 2``) and repeats with period ``2 * (size - 1)``, so any pad
    width is the same as padding the whole axis. An axis of length 1 repeats its voxel.
    """
    idx = np.arange(lo, hi)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def read_region(
    arr: zarr.Array, lo: tuple[int, ...], hi: tuple[int, ...], *, where: Path, squeeze: bool
) -> np.ndarray:
    """Voxels ``[lo, hi)`` of a (z, y, x) array, mirror-padded where outside the volume.

    Equal to ``np.pad(volume, pad, mode="reflect")[lo + pad : hi + pad]`` for any ``pad``
    (see :func:`reflect_index`), but reads only the voxels it needs.

    Parameters
    ----------
    arr : the image array, (z, y, x) or (y, x) when ``squeeze``
    lo, hi : per-axis start (may be negative) and stop (may pass the end)

    Returns
    -------
    numpy.ndarray of the array's dtype, shape ``hi - lo``

    Raises
    ------
    UserError
        An input chunk cannot be decoded; the message names the chunk.
    """
    shape = (1, *arr.shape) if squeeze else tuple(arr.shape)
    index = [reflect_index(a, b, s) for a, b, s in zip(lo, hi, shape, strict=True)]
    real = tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)
    sel = real[1:] if squeeze else real
    data = read_checked(arr, sel, where)
    if squeeze:
        data = data[None]
    for ax, (idx, sl) in enumerate(zip(index, real, strict=True)):
        if len(idx) != data.shape[ax] or idx[0] != sl.start or np.any(np.diff(idx) != 1):
            data = np.take(data, idx - sl.start, axis=ax)
    return data
