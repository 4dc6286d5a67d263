"""Targets of the instance U-Net's heads, computed from an instance label image.

* :func:`boundary_map`: an object voxel is on the boundary when one of its face neighbours
  (4 in 2D, 6 in 3D) holds another value (another object or the background). Outside the
  array nothing is known: the border of the array is not a boundary by itself.
* :func:`distance_map`: per object, the Euclidean distance of each of its voxels to the
  nearest voxel outside it (another object, the background, or beyond the array border),
  divided by the object's largest such distance: 1 at the object's centre, 1/max next to its
  boundary, 0 outside objects. Every object therefore has values in (0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["boundary_map", "distance_map", "instance_targets"]


def boundary_map(instances: np.ndarray) -> np.ndarray:
    """Boolean map of the object voxels with a face neighbour of another value."""
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, bool)
    for a in range(inst.ndim):
        lo = [slice(None)] * inst.ndim
        hi = [slice(None)] * inst.ndim
        lo[a], hi[a] = slice(None, -1), slice(1, None)
        diff = inst[tuple(lo)] != inst[tuple(hi)]
        out[tuple(lo)] |= diff
        out[tuple(hi)] |= diff
    return out & (inst > 0)


def distance_map(instances: np.ndarray, sampling: object = None) -> np.ndarray:
    """Per-object distance to the object's boundary, normalised to (0, 1]; 0 outside (float32).

    ``sampling``: the voxel size per axis (anisotropic volumes), as in
    :func:`scipy.ndimage.distance_transform_edt`.
    """
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, np.float32)
    if not inst.any():
        return out
    for i, box in enumerate(ndimage.find_objects(inst.astype(np.int64, copy=False)), start=1):
        if box is None:
            continue
        # one voxel of margin: beyond the array border counts as outside the object
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        mask = inst[grown] == i
        pad = [
            (1 if g.start == s.start else 0, 1 if g.stop > n else 0)
            for g, s, n in zip(grown, box, inst.shape, strict=True)
        ]
        padded = np.pad(mask, pad)
        d = ndimage.distance_transform_edt(padded, sampling=sampling)
        d = d[tuple(slice(a, d.shape[k] - b) for k, (a, b) in enumerate(pad))]
        top = float(d[mask].max())
        region = out[grown]
        region[mask] = d[mask] / top
    return out


def instance_targets(
    instances: np.ndarray, sampling: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """(boundary uint8 (0/1), distance float32) of an instance label image."""
    return boundary_map(instances).astype(np.uint8), distance_map(instances, sampling)
