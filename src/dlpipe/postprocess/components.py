"""Connected components computed chunk by chunk, merged across chunk borders.

Each block is labelled with :func:`scipy.ndimage.label` (one pass per phase); the faces
of each block are kept, and labels that touch across a block border (under the chosen
connectivity, diagonals included) are joined with a union-find
(:func:`scipy.sparse.csgraph.connected_components`). The result is the same partition
into components as ``scipy.ndimage.label`` on the whole array, for every phase.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.stores.volume import chunk_shape

CONNECTIVITY = {3: {6: 1, 18: 2, 26: 3}, 2: {4: 1, 8: 2}}


def structure(ndim: int, connectivity: int) -> np.ndarray:
    """The scipy structuring element for 6/18/26 (3D) or 4/8 (2D) connectivity."""
    try:
        rank = CONNECTIVITY[ndim][connectivity]
    except KeyError:
        allowed = sorted(CONNECTIVITY.get(ndim, {}))
        raise UserError(
            f"connectivity {connectivity} is not valid in {ndim}D (use one of {allowed})"
        ) from None
    return ndimage.generate_binary_structure(ndim, rank)


def blocks(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[slice, ...]]:
    """The block slices of a regular grid, in C (raster) order."""
    ranges = [range(0, s, c) for s, c in zip(shape, chunks, strict=True)]
    return [
        tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, chunks, shape, strict=True))
        for origin in itertools.product(*ranges)
    ]


@dataclass
class Components:
    """Connected components of every phase of a label volume.

    Attributes
    ----------
    count : number of components (ids 1..count; 0 is "no component").
    phase : (count + 1,) int64, the phase of each id (``phase[0]`` unused).
    voxels : (count + 1,) int64, voxel count of each id.
    ids : the component id of every voxel (uint32, the input's shape), when kept.
    moments : (count + 1, 10) float64 sums of 1, z, y, x, zz, yy, xx, zy, zx, yx, when asked.
    bbox : (count + 1, 2 * ndim) int64 half-open bounding boxes (starts, then stops).
    """

    count: int
    phase: np.ndarray
    voxels: np.ndarray
    ids: Any = None
    moments: np.ndarray | None = None
    bbox: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def label_chunked(
    source: Any,
    phases: Sequence[int],
    *,
    connectivity: int = 26,
    chunks: Sequence[int] | None = None,
    out: Any = None,
    stats: bool = False,
    sizes: bool = True,
    progress: bool = True,
) -> Components:
    """Label the connected components of each phase of ``source``, block by block.

    Parameters
    ----------
    source : array-like, (z, y, x) or (y, x), integer phases; anything sliceable with a tuple
        of slices (a Zarr array, a NumPy array or memory map, a lazy view).
    phases : the phase values to label (other values are background).
    connectivity : 6, 18 or 26 in 3D; 4 or 8 in 2D.
    chunks : block shape; default the source's chunks (or 64 per axis).
    out : where the uint32 component ids go (a writable array of ``source.shape``, e.g. a
        Zarr array); None keeps them in a NumPy array in memory; False does not keep them.
    stats : also accumulate moments and bounding boxes (for the blob table).
    sizes : count the voxels of each component (``voxels``; zeros when false).

    Returns
    -------
    Components
        Ids are numbered 1..count in the order of the block (raster order) where a
        component first appears. The partition equals ``scipy.ndimage.label`` run on
        ``source == p`` for each phase ``p`` on the whole array.
    """
    shape = tuple(int(s) for s in source.shape)
    ndim = len(shape)
    struct = structure(ndim, connectivity)
    chunks = tuple(int(c) for c in (chunks or chunk_shape(source)))
    keep = out is not False
    if out is None:
        out = np.zeros(shape, dtype=np.uint32)
    grid = blocks(shape, chunks)
    # Faces of block borders, in global provisional labels, kept only while needed: those
    # across axis 0 for the boundary being filled (two planes), those across the other axes
    # for one layer of blocks along axis 0 (plus the layer before's last row, for diagonal
    # touches). Their pairs are taken when a layer is done; memory O(plane), not O(volume).
    face0: dict[int, np.ndarray] = {}
    carry: dict[int, np.ndarray] = {}
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    phase_of = [np.zeros(1, np.int64)]
    sizes = [np.zeros(1, np.int64)]
    mom_parts = [np.zeros((1, 10))] if stats else []
    bbox_parts = [np.zeros((1, 2 * ndim), np.int64)] if stats else []
    offset = 0
    ranges: list[tuple[int, int]] = []  # provisional labels (base, end] of each block
    bar = tqdm(total=len(grid), desc="components", disable=None if progress else True, leave=False)
    for l0, layer_blocks in itertools.groupby(grid, key=lambda b: b[0].start):
        layer = list(layer_blocks)
        l1 = layer[0][0].stop
        faces = {
            a: _layer_faces(shape, chunks, a, l1 - l0 + 1, carry.get(a)) for a in range(1, ndim)
        }
        for sl in layer:
            data = np.asarray(source[sl])
            ids: np.ndarray | None = None
            base = offset
            block_sizes = []
            for p in phases:
                mask = data == p
                if not mask.any():
                    continue
                lab, n = ndimage.label(mask, structure=struct, output=np.uint32)
                if n == 0:
                    continue
                if offset + n >= 2**32 - 1:
                    raise UserError("more than 2**32 - 2 provisional components; use larger chunks")
                block_sizes.append(
                    np.bincount(lab.ravel(), minlength=n + 1)[1:]
                    if sizes
                    else np.zeros(n, np.int64)
                )
                if offset > base:  # block-local numbering across phases
                    np.add(lab, np.uint32(offset - base), out=lab, where=mask)
                if ids is None:
                    ids = lab
                else:
                    ids += lab
                phase_of.append(np.full(n, p, np.int64))
                offset += n
            if ids is None:
                ids = np.zeros(data.shape, dtype=np.uint32)
            nloc = offset - base
            if nloc:
                sizes.extend(block_sizes)
                if stats:
                    local = ids.astype(np.int64)
                    mom, bb = _block_stats(local, nloc, [s.start for s in sl])
                    mom_parts.append(mom[1:])
                    bbox_parts.append(bb[1:])
            if keep:
                out[sl] = ids
            ranges.append((base, offset))
            _store_faces(ids, base, sl, shape, chunks, l0, face0, faces)
            bar.update()
        phase_of = [np.concatenate(phase_of)]  # the phase of every provisional label so far
        for a, f in faces.items():  # this layer's borders across the other axes
            if f.shape[0]:
                pairs.append(_face_pairs(f, a, struct, phase_of[0]))
                carry[a] = f[:, :, -1:].copy()
        k = l0 // chunks[0]
        if k:  # the border before this layer is now complete
            pairs.append(_face_pairs(face0.pop(k - 1), 0, struct, phase_of[0]))
    bar.close()
    phase_arr = np.concatenate(phase_of)
    size_arr = np.concatenate(sizes)
    lut = _merge(pairs, offset)
    count = int(lut.max()) if lut.size else 0
    voxels = np.bincount(lut, weights=size_arr, minlength=count + 1).astype(np.int64)
    voxels[0] = 0
    phase_final = np.zeros(count + 1, np.int64)
    phase_final[lut] = phase_arr
    result = Components(count=count, phase=phase_final, voxels=voxels)
    if stats:
        mom = np.concatenate(mom_parts)
        bb = np.concatenate(bbox_parts)
        result.moments = np.stack(
            [np.bincount(lut, weights=mom[:, k], minlength=count + 1) for k in range(10)], axis=1
        )
        fb = np.empty((count + 1, 2 * ndim), np.int64)
        fb[:, :ndim] = np.iinfo(np.int64).max
        fb[:, ndim:] = np.iinfo(np.int64).min
        np.minimum.at(fb[:, :ndim], lut, bb[:, :ndim])
        np.maximum.at(fb[:, ndim:], lut, bb[:, ndim:])
        fb[0] = 0
        result.bbox = fb
    if keep:
        lut32 = lut.astype(np.uint32)
        for sl, (lo, hi) in zip(grid, ranges, strict=True):
            if hi > lo:  # block-local label k -> final id of provisional label lo + k
                block_lut = lut32[lo : hi + 1].copy()
                block_lut[0] = 0
                out[sl] = np.take(block_lut, np.asarray(out[sl]))
        result.ids = out
    return result


def _glob(face: np.ndarray, base: int) -> np.ndarray:
    """Block-local labels of a face to provisional (global) labels; 0 stays 0."""
    return np.where(face > 0, face + np.uint32(base), np.uint32(0))


def _block_stats(local: np.ndarray, n: int, origin: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Moment sums (n+1, 10) and bounding boxes (n+1, 2*ndim) of local labels 1..n."""
    ndim = local.ndim
    nz = np.nonzero(local)
    lab = local[nz]
    coords = [c.astype(np.float64) + o for c, o in zip(nz, origin, strict=True)]
    if ndim == 2:
        coords = [np.zeros_like(coords[0]), *coords]
    z, y, x = coords
    mom = np.zeros((n + 1, 10))
    weights = [None, z, y, x, z * z, y * y, x * x, z * y, z * x, y * x]
    for k, w in enumerate(weights):
        mom[:, k] = np.bincount(lab, weights=w, minlength=n + 1)
    bb = np.zeros((n + 1, 2 * ndim), np.int64)
    for i, obj in enumerate(
        ndimage.find_objects(local.astype(np.int64 if n > 2**31 else np.int32)), 1
    ):
        if obj is None:
            continue
        bb[i, :ndim] = [s.start + o for s, o in zip(obj, origin, strict=True)]
        bb[i, ndim:] = [s.stop + o for s, o in zip(obj, origin, strict=True)]
    return mom, bb


def _layer_faces(
    shape: Sequence[int], chunks: Sequence[int], a: int, rows: int, carry: np.ndarray | None
) -> np.ndarray:
    """Faces across axis ``a`` (> 0) of one layer: (borders, 2, rows, other axes...), row 0 the
    previous layer's last row (``carry``)."""
    nb = max(0, (shape[a] - 1) // chunks[a])
    cross = [shape[i] for i in range(1, len(shape)) if i != a]
    faces = np.zeros((nb, 2, rows, *cross), dtype=np.uint32)
    if carry is not None:
        faces[:, :, :1] = carry
    return faces


def _store_faces(
    ids: np.ndarray,
    base: int,
    sl: tuple[slice, ...],
    shape: Sequence[int],
    chunks: Sequence[int],
    l0: int,
    face0: dict[int, np.ndarray],
    faces: dict[int, np.ndarray],
) -> None:
    """Put a block's first and last planes (global labels) into the faces they border."""
    for a in range(len(shape)):
        cs = chunks[a]
        lo, hi = sl[a].start, sl[a].stop
        if a == 0:
            cross: tuple[slice, ...] = sl[1:]
        else:
            rows = slice(sl[0].start - l0 + 1, sl[0].stop - l0 + 1)
            cross = (rows, *sl[1:a], *sl[a + 1 :])
        if lo > 0:  # first plane of this block is "after" boundary lo // cs - 1
            plane = _glob(np.take(ids, 0, axis=a), base)
            if a == 0:
                face0[lo // cs - 1][(0, 1, *cross)] = plane
            else:
                faces[a][(lo // cs - 1, 1, *cross)] = plane
        if hi < shape[a]:
            plane = _glob(np.take(ids, -1, axis=a), base)
            if a == 0:
                if hi // cs - 1 not in face0:
                    face0[hi // cs - 1] = np.zeros((1, 2, *shape[1:]), np.uint32)
                face0[hi // cs - 1][(0, 0, *cross)] = plane
            else:
                faces[a][(hi // cs - 1, 0, *cross)] = plane


def _face_pairs(
    faces: np.ndarray, a: int, struct: np.ndarray, phase_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Provisional label pairs (u, v) of one phase touching across the borders ``faces`` of
    axis ``a`` (borders, 2 = before/after, cross axes...); runs of the same pair dropped."""
    ndim = struct.ndim
    centre = np.ones(ndim, int)
    before, after = faces[:, 0], faces[:, 1]
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    # offsets with +1 along axis a, any allowed shift across the face
    for off in np.argwhere(struct):
        d = off - centre
        if d[a] != 1:
            continue
        shift = [int(v) for i, v in enumerate(d) if i != a]
        src = [slice(None)]
        dst = [slice(None)]
        for s in shift:
            src.append(slice(max(0, -s), None if s <= 0 else -s))
            dst.append(slice(max(0, s), None if s >= 0 else s))
        u = before[tuple(src)].ravel()
        v = after[tuple(dst)].ravel()
        keep = (u > 0) & (v > 0)
        u, v = u[keep].astype(np.int64), v[keep].astype(np.int64)
        keep = phase_of[u] == phase_of[v]
        u, v = u[keep], v[keep]
        if u.size:
            # drop runs of the same pair (faces are mostly long runs); no sort needed
            run = np.ones(u.size, bool)
            run[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
            rows.append(u[run])
            cols.append(v[run])
    # each pair once (labels < 2**32: one 64-bit key), so the merge's graph stays small
    key = np.unique((np.concatenate(rows) << 32) | np.concatenate(cols))
    return key >> 32, key & 0xFFFFFFFF


def _merge(pairs: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Join provisional labels that touch across block borders; return the final-id lut."""
    r = np.concatenate([np.zeros(0, np.int64), *(u for u, _ in pairs)])
    c = np.concatenate([np.zeros(0, np.int64), *(v for _, v in pairs)])
    graph = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(n + 1, n + 1))
    _, comp = connected_components(graph, directed=False)
    # renumber: component of the smallest provisional label first; 0 stays 0
    _, first = np.unique(comp[1:], return_index=True)
    order = np.argsort(first)
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(1, order.size + 1)
    uniq_of = np.unique(comp[1:], return_inverse=True)[1]
    lut = np.zeros(n + 1, np.int64)
    lut[1:] = rank[uniq_of]
    return lut
