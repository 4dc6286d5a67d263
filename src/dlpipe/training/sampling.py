"""Patch sampling from a Zarr volume for 2D, 2.5D and 3D training.

The label volume is scanned once, chunk by chunk, into per-(slice, tile) class counts;
those counts decide which patches can be drawn (only where there are labelled voxels) and
where the rare classes are (oversampling). Patch positions and augmentation seeds of an
epoch are drawn in the main process from ``(seed, epoch)``, so an epoch is reproducible
(and resumable) whatever the number of DataLoader workers; the workers only read the Zarr
chunks under each patch (:mod:`dlpipe.training.data`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.labels import IGNORE_INDEX

__all__ = ["MODES", "LabelIndex", "PatchSampler", "PatchSpec", "max_label", "scan_labels"]

MODES = ("2d", "2.5d", "3d")


@dataclass
class LabelIndex:
    """Labelled-voxel counts of a label volume.

    Attributes
    ----------
    counts : (Z, BY, BX, C) int64, voxels of class c in slice z and tile (by, bx)
    tile : (TY, TX) tile size of the counts (the label chunk's y, x size)
    """

    counts: np.ndarray
    tile: tuple[int, int]

    def class_counts(self, z_range: tuple[int, int]) -> np.ndarray:
        """(C,) voxel counts per class within ``z_range``."""
        return self.counts[z_range[0] : z_range[1]].sum(axis=(0, 1, 2))

    def labelled_slices(self, z_range: tuple[int, int]) -> np.ndarray:
        """Sorted z indices in ``z_range`` with at least one labelled voxel."""
        per = self.counts[z_range[0] : z_range[1]].sum(axis=(1, 2, 3))
        return np.nonzero(per)[0] + z_range[0]


def scan_labels(labels: Any, n_classes: int, ignore_index: int = IGNORE_INDEX) -> LabelIndex:
    """Count the classes of a (Z, Y, X) label array, reading one chunk-row of z at a time.

    Raises
    ------
    UserError
        A label value is neither a class index (< ``n_classes``) nor ``ignore_index``.
    """
    nz, ny, nx = labels.shape
    chunks = getattr(labels, "chunks", (min(nz, 16), ny, nx))
    cz, ty, tx = int(chunks[0]), int(chunks[1]), int(chunks[2])
    by, bx = -(-ny // ty), -(-nx // tx)
    counts = np.zeros((nz, by, bx, n_classes), dtype=np.int64)
    for z0 in range(0, nz, cz):
        block = np.asarray(labels[z0 : z0 + cz])
        bad = (block >= n_classes) & (block != ignore_index)
        if bad.any():
            z, y, x = (int(v[0]) for v in np.nonzero(bad))
            raise UserError(
                f"mask value {int(block[z, y, x])} at (z={z0 + z}, y={y}, x={x}) is outside the "
                f"{n_classes} classes (0..{n_classes - 1}) and is not the ignore index "
                f"{ignore_index}"
            )
        for j in range(by):
            for i in range(bx):
                tile = block[:, j * ty : (j + 1) * ty, i * tx : (i + 1) * tx]
                flat = tile.reshape(tile.shape[0], -1)
                for c in range(n_classes):
                    counts[z0 : z0 + tile.shape[0], j, i, c] = (flat == c).sum(axis=1)
    return LabelIndex(counts, (ty, tx))


def max_label(labels: Any, ignore_index: int = IGNORE_INDEX) -> int:
    """Largest label value other than ``ignore_index`` (−1 when there is none)."""
    nz = labels.shape[0]
    cz = int(getattr(labels, "chunks", (16,))[0])
    top = -1
    for z0 in range(0, nz, cz):
        block = np.asarray(labels[z0 : z0 + cz])
        vals = block[block != ignore_index]
        if vals.size:
            top = max(top, int(vals.max()))
    return top


@dataclass(frozen=True)
class PatchSpec:
    """One patch: the corner (z, y, x) of its labelled extent, and its augmentation seed.

    ``rare`` ≥ 0 asks the worker to centre the patch on a random voxel of class ``rare``
    inside tile (ty, tx) of slice z instead (the tile's labels are read to find one).

    Patches of placed annotations (:class:`dlpipe.training.sparse.SliceSampler`): a 2D or
    2.5D patch lies in a slice along ``axis``, (z, y, x) then being (slice index, row,
    column) of that slice's image (a y-slice's rows are z, its columns x; an x-slice's
    rows z, columns y) and the 2.5D context the neighbouring slices along ``axis``; a 3D
    patch's corner is always (z, y, x). ``part`` names the labels read: the training
    slices' (``"train"``) or the validation slices' (``"val"``).
    """

    z: int
    y: int
    x: int
    seed: int
    rare: int = -1
    ty: int = 0
    tx: int = 0
    axis: str = "z"
    part: str = "train"


class PatchSampler:
    """Draws the patches of a training epoch, and the fixed grid of validation patches.

    Parameters
    ----------
    index : the label scan
    shape : (Z, Y, X) of the volume
    mode : ``"2d"``, ``"2.5d"`` or ``"3d"``
    patch : (Y, X) in 2D/2.5D, (Z, Y, X) in 3D
    oversample : probability that a patch is centred on a voxel of a rare class
    rare_classes : class indices to oversample (present in the training range)
    """

    def __init__(
        self,
        index: LabelIndex,
        shape: tuple[int, int, int],
        mode: str,
        patch: tuple[int, ...],
        oversample: float,
        rare_classes: list[int],
    ) -> None:
        self.index, self.shape, self.mode = index, shape, mode
        self.patch3 = tuple(patch) if mode == "3d" else (1, *patch)
        self.oversample, self.rare = oversample, rare_classes

    def _z_corner(self, zl: int, z_range: tuple[int, int], rng: np.random.Generator) -> int:
        pz = self.patch3[0]
        lo = max(z_range[0], zl - pz + 1)
        hi = min(zl, z_range[1] - pz)
        return int(rng.integers(lo, hi + 1)) if hi >= lo else max(z_range[0], min(zl, hi))

    def epoch(self, n: int, z_range: tuple[int, int], rng: np.random.Generator) -> list[PatchSpec]:
        """``n`` random patches in the (half-open) training ``z_range``."""
        slices = self.index.labelled_slices(z_range)
        if len(slices) == 0:
            raise UserError(f"the training range z {list(z_range)} has no labelled voxel")
        _, ny, nx = self.shape
        _, py, px = self.patch3
        counts = self.index.counts
        specs = []
        for _ in range(n):
            seed = int(rng.integers(2**31))
            if self.rare and rng.random() < self.oversample:
                c = self.rare[int(rng.integers(len(self.rare)))]
                sub = counts[z_range[0] : z_range[1], :, :, c]
                w = sub.astype(np.float64).ravel()
                k = int(rng.choice(w.size, p=w / w.sum()))
                zl, ty, tx = np.unravel_index(k, sub.shape)
                zl = int(zl) + z_range[0]
                specs.append(
                    PatchSpec(self._z_corner(zl, z_range, rng), 0, 0, seed, c, int(ty), int(tx))
                )
                continue
            zl = int(slices[int(rng.integers(len(slices)))])
            specs.append(
                PatchSpec(
                    self._z_corner(zl, z_range, rng),
                    int(rng.integers(ny - py + 1)),
                    int(rng.integers(nx - px + 1)),
                    seed,
                )
            )
        return specs

    def grid(self, z_range: tuple[int, int]) -> list[PatchSpec]:
        """Patches tiling every labelled slice (2D) or the slab (3D) of ``z_range``;
        the last patch of each axis is aligned with the end."""
        _, ny, nx = self.shape
        pz, py, px = self.patch3

        def starts(n: int, p: int) -> list[int]:
            s = list(range(0, n - p + 1, p))
            if s[-1] != n - p:
                s.append(n - p)
            return s

        if self.mode == "3d":
            if z_range[1] - z_range[0] < pz:
                return []
            zs = [z_range[0] + s for s in starts(z_range[1] - z_range[0], pz)]
        else:
            zs = [int(z) for z in self.index.labelled_slices(z_range)]
        return [PatchSpec(z, y, x, 0) for z in zs for y in starts(ny, py) for x in starts(nx, px)]
