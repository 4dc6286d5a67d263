"""Patches around annotated slices placed in a volume (``dlpipe cvat EXPORT --volume``).

The annotated slices may lie along any axis. A 2D or 2.5D model trains on patches *in*
those slices (an annotated y-slice gives xz patches; the 2.5D context is the neighbouring
slices of the scan along the slice's axis). A 3D model trains on (z, y, x) boxes of the
scan that contain part of an annotated slice; its loss sees only the annotated voxels
(the others are the ignore index). Only the annotated slices are read to index them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores.annotations import AXES, plane_shape, read_plane
from dlpipe.training.sampling import PatchSpec

log = logging.getLogger(__name__)

__all__ = ["SAMPLES_PER_CLASS", "SliceSampler"]

SAMPLES_PER_CLASS = 1024
"""Voxel positions kept per class and slice for rare-class oversampling."""


def _voxel(axis: str, index: int, r: int, c: int) -> tuple[int, int, int]:
    """(z, y, x) of row ``r``, column ``c`` of slice ``index`` along ``axis``."""
    if axis == "z":
        return index, r, c
    if axis == "y":
        return r, index, c
    return r, c, index


def _starts(n: int, p: int) -> list[int]:
    s = list(range(0, n - p + 1, p))
    if s[-1] != n - p:
        s.append(n - p)
    return s


class SliceSampler:
    """Draws training patches around the training slices, and the validation grid.

    Parameters
    ----------
    labels : the training label view (annotated voxels of the training slices only, the
        ignore index elsewhere)
    train, val : slices per axis, ``{"z": [4, 12], "y": [80]}``
    shape : (Z, Y, X) of the volume
    mode, patch : as for :class:`~dlpipe.training.sampling.PatchSampler`
    oversample : probability that a patch is centred on a voxel of a rare class
    n_classes, ignore_index : label values allowed

    Attributes
    ----------
    items : the (axis, index) training slices used
    counts : (S, C) int64 voxels per class of each training slice
    class_counts : (C,) their sum
    rare : classes to oversample (set by the caller once it knows them)
    """

    def __init__(
        self,
        labels: Any,
        train: Mapping[str, Sequence[int]],
        val: Mapping[str, Sequence[int]],
        shape: tuple[int, int, int],
        mode: str,
        patch: tuple[int, ...],
        oversample: float,
        n_classes: int,
        ignore_index: int,
    ) -> None:
        self.shape, self.mode = tuple(int(s) for s in shape), mode
        self.patch3 = tuple(patch) if mode == "3d" else (1, *patch)
        self.oversample, self.rare = oversample, []
        self.n_classes, self.ignore_index = n_classes, ignore_index
        self.items = self._usable(train)
        self.val_items = self._usable(val)
        self.counts = np.zeros((len(self.items), n_classes), dtype=np.int64)
        self.samples: dict[tuple[int, int], np.ndarray] = {}
        rng = np.random.default_rng(0)
        for s, (axis, index) in enumerate(self.items):
            plane = read_plane(labels, axis, index)
            self._check(plane, axis, index)
            for c in range(n_classes):
                where = np.argwhere(plane == c)
                self.counts[s, c] = len(where)
                if len(where) > SAMPLES_PER_CLASS:
                    where = where[np.sort(rng.choice(len(where), SAMPLES_PER_CLASS, False))]
                if len(where):
                    self.samples[(s, c)] = where
        self.class_counts = self.counts.sum(axis=0)

    def _usable(self, slices: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
        """The slices whose plane holds a patch (2D/2.5D: a y-slice needs Z >= rows)."""
        out = []
        for axis in AXES:
            for index in sorted(int(i) for i in slices.get(axis, [])):
                rows, cols = plane_shape(self.shape, axis)
                if self.mode != "3d" and (rows < self.patch3[1] or cols < self.patch3[2]):
                    log.warning(
                        "train: %s-slice %d (%dx%d) is smaller than the patch %s; not used",
                        axis,
                        index,
                        rows,
                        cols,
                        list(self.patch3[1:]),
                    )
                    continue
                out.append((axis, index))
        return out

    def _check(self, plane: np.ndarray, axis: str, index: int) -> None:
        bad = (plane >= self.n_classes) & (plane != self.ignore_index)
        if bad.any():
            r, c = (int(v[0]) for v in np.nonzero(bad))
            z, y, x = _voxel(axis, index, r, c)
            raise UserError(
                f"annotation value {int(plane[r, c])} at (z={z}, y={y}, x={x}) is outside the "
                f"{self.n_classes} classes (0..{self.n_classes - 1}) and is not the ignore "
                f"index {self.ignore_index}"
            )

    def _corner(self, axis: str, index: int, r: int, c: int, centred: bool, rng: Any) -> tuple:
        """Patch corner for a slice position (2D/2.5D: in the plane; 3D: in the volume)."""
        _, py, px = self.patch3
        if self.mode != "3d":
            rows, cols = plane_shape(self.shape, axis)
            if centred:
                r0 = min(max(r - py // 2, 0), rows - py)
                return index, r0, min(max(c - px // 2, 0), cols - px)
            return index, int(rng.integers(rows - py + 1)), int(rng.integers(cols - px + 1))
        voxel = _voxel(axis, index, r, c)
        corner = []
        for a, v, p, n in zip(AXES, voxel, self.patch3, self.shape, strict=True):
            if centred:
                corner.append(min(max(v - p // 2, 0), n - p))
            elif a == axis:  # the box holds the slice
                lo, hi = max(0, v - p + 1), min(v, n - p)
                corner.append(int(rng.integers(lo, hi + 1)))
            else:
                corner.append(int(rng.integers(n - p + 1)))
        return tuple(corner)

    def epoch(self, n: int, _z_range: Any, rng: np.random.Generator) -> list[PatchSpec]:
        """``n`` random patches around the training slices (``_z_range`` is not used)."""
        if not self.items or self.class_counts.sum() == 0:
            raise UserError("no annotated voxel in the training slices")
        specs = []
        for _ in range(n):
            seed = int(rng.integers(2**31))
            if self.rare and rng.random() < self.oversample:
                c = self.rare[int(rng.integers(len(self.rare)))]
                w = self.counts[:, c].astype(np.float64)
                s = int(rng.choice(len(w), p=w / w.sum()))
                pts = self.samples[(s, c)]
                r, col = (int(v) for v in pts[int(rng.integers(len(pts)))])
                axis, index = self.items[s]
                corner = self._corner(axis, index, r, col, True, rng)
            else:
                axis, index = self.items[int(rng.integers(len(self.items)))]
                corner = self._corner(axis, index, 0, 0, False, rng)
            specs.append(PatchSpec(*corner, seed, axis=axis))
        return specs

    def grid(self, _z_range: Any = None) -> list[PatchSpec]:
        """Patches tiling each validation slice (3D: boxes centred on it along its axis)."""
        _, py, px = self.patch3
        specs = []
        for axis, index in self.val_items:
            if self.mode != "3d":
                rows, cols = plane_shape(self.shape, axis)
                specs += [
                    PatchSpec(index, r, c, 0, axis=axis, part="val")
                    for r in _starts(rows, py)
                    for c in _starts(cols, px)
                ]
                continue
            k = AXES.index(axis)
            lists = [_starts(n, p) for n, p in zip(self.shape, self.patch3, strict=True)]
            lists[k] = [min(max(index - self.patch3[k] // 2, 0), self.shape[k] - self.patch3[k])]
            specs += [
                PatchSpec(z, y, x, 0, axis=axis, part="val")
                for z in lists[0]
                for y in lists[1]
                for x in lists[2]
            ]
        return specs
