"""Seeded watershed of the instance U-Net's maps, on a whole image or block by block.

:func:`seeded_watershed` turns a foreground probability and a normalised distance map into
instances: seeds are the connected regions where the distance exceeds ``seed_threshold``
(inside the foreground), flooded over ``-distance`` within the foreground (probability >
``foreground_threshold``) by :func:`skimage.segmentation.watershed`. A foreground component
without any seed becomes one object. Objects smaller than ``min_size`` are dropped.

:func:`watershed_chunked` does the same on arrays too large for memory, block by block:
each block is flooded with a halo of context around it and keeps its core; then objects
cut by block faces are joined when *both* blocks agree, across the face, that the two
neighbouring voxels belong to one object (each block's result extends one voxel into its
neighbour). Joins go through a union-find (:func:`scipy.sparse.csgraph.connected_components`),
so memory holds one block, the face planes and a few numbers per object, never the volume.
With a halo larger than the objects the result matches the whole-array watershed.

:func:`grid_search` picks the thresholds on validation images (F1 at IoU 0.5).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dlpipe.errors import UserError

__all__ = [
    "THRESHOLDS",
    "ChunkedInstances",
    "block_slices",
    "check_thresholds",
    "choose_thresholds",
    "grid_search",
    "seeded_watershed",
    "seeds",
    "watershed_chunked",
]

THRESHOLDS = {
    "seed_threshold": (0.0, 1.0),
    "foreground_threshold": (0.0, 1.0),
}
"""Open ranges of the thresholds (both are probabilities / normalised distances)."""


def check_thresholds(params: Mapping[str, Any], where: str) -> None:
    """Refuse thresholds outside (0, 1) and a negative ``min_size`` (one line, exit 2)."""
    for key, (lo, hi) in THRESHOLDS.items():
        v = params.get(key)
        if v is None:
            continue
        if not (isinstance(v, int | float) and lo < float(v) < hi):
            raise UserError(f"{where}.{key} must lie strictly between {lo:g} and {hi:g}, got {v!r}")
    v = params.get("min_size")
    if v is not None and (not isinstance(v, int) or v < 0):
        raise UserError(f"{where}.min_size must be a whole number >= 0, got {v!r}")


def seeds(distance: np.ndarray, foreground: np.ndarray, seed_threshold: float) -> np.ndarray:
    """Seed labels: connected regions (full connectivity) of foreground with distance > t."""
    mask = (np.asarray(distance) > seed_threshold) & foreground
    lab, _ = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, bool))
    return lab.astype(np.int32)


def seeded_watershed(
    foreground_prob: np.ndarray,
    distance: np.ndarray,
    *,
    seed_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_size: int = 0,
) -> np.ndarray:
    """Instances (uint32, 1..K in raster order of their first voxel) from the two maps.

    Parameters
    ----------
    foreground_prob : (y, x) or (z, y, x) probability that a voxel is an object's
    distance : same shape, the normalised distance to the boundary (0..1)
    seed_threshold, foreground_threshold : see the module text
    min_size : objects with fewer voxels are dropped (0 keeps all)
    """
    from skimage.segmentation import watershed  # deferred: skimage is slow to import

    fg = np.asarray(foreground_prob) > foreground_threshold
    dist = np.asarray(distance, np.float32)
    markers = seeds(dist, fg, seed_threshold)
    n = int(markers.max(initial=0))
    # foreground without a seed: its components become objects of their own
    rest, n_rest = ndimage.label(fg & (markers == 0), structure=np.ones((3,) * fg.ndim, bool))
    if n_rest:
        touching = np.zeros(n_rest + 1, bool)
        grown = ndimage.binary_dilation(markers > 0, np.ones((3,) * fg.ndim, bool))
        touching[np.unique(rest[grown & (rest > 0)])] = True
        # only the components that touch no seed region get a seed: the rest are flooded
        alone = ~touching
        alone[0] = False
        ids = np.cumsum(alone) + n
        sel = alone[rest]
        markers[sel] = ids[rest[sel]]
    if markers.max(initial=0) == 0:
        return np.zeros(fg.shape, np.uint32)
    lab = watershed(-dist, markers=markers, mask=fg)
    return _relabel(lab, min_size)


def _relabel(lab: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects under ``min_size`` voxels; ids 1..K in raster order of first voxel."""
    flat = lab.ravel()
    sizes = np.bincount(flat)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    _, first = np.unique(flat, return_index=True)
    order = np.unique(flat)
    lut = np.zeros(len(sizes), np.uint32)
    kept = [(f, v) for f, v in zip(first, order, strict=True) if v and keep[v]]
    kept.sort()
    for k, (_, v) in enumerate(kept, start=1):
        lut[v] = k
    return lut[lab]


# --------------------------------------------------------------------------- chunked


@dataclass
class ChunkedInstances:
    """The result of :func:`watershed_chunked`.

    Attributes
    ----------
    count : number of objects (ids 1..count in ``out``)
    sizes : (count + 1,) voxels per id
    bbox : (count + 1, 2 * ndim) half-open boxes (starts, then stops)
    class_id : (count + 1,) majority class of each object (from ``classes``; else 1)
    score : (count + 1,) mean foreground probability of each object
    merged : number of joins across block faces
    """

    count: int
    sizes: np.ndarray
    bbox: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    merged: int


def block_slices(shape: Sequence[int], block: Sequence[int]) -> list[tuple[slice, ...]]:
    """The core slices of a regular grid of blocks, in C (raster) order."""
    ranges = [range(0, s, b) for s, b in zip(shape, block, strict=True)]
    return [
        tuple(slice(o, min(o + b, s)) for o, b, s in zip(origin, block, shape, strict=True))
        for origin in itertools.product(*ranges)
    ]


def watershed_chunked(
    foreground_prob: Any,
    distance: Any,
    out: Any,
    *,
    block: Sequence[int],
    halo: Sequence[int],
    seed_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_size: int = 0,
    classes: Any = None,
    n_classes: int = 2,
    progress: Iterable[Any] | None = None,
) -> ChunkedInstances:
    """Seeded watershed of two maps block by block, objects joined across block faces.

    Parameters
    ----------
    foreground_prob, distance : (y, x) or (z, y, x) arrays sliceable by tuples of slices
        (NumPy, Zarr), as for :func:`seeded_watershed`
    out : writable uint32 array of the same shape (NumPy or Zarr); the final ids go there
    block : core block per axis
    halo : context read around each core per axis (>= 1 along every axis the grid splits;
        larger than the objects' radius for a result equal to the whole-array one)
    classes : optional uint8 array of the same shape, the argmax class of each voxel
    n_classes : number of classes (for ``classes``)
    progress : a wrapper around the list of blocks (e.g. ``tqdm``), or None

    Returns
    -------
    ChunkedInstances
    """
    shape = tuple(int(s) for s in foreground_prob.shape)
    nd = len(shape)
    block = tuple(min(int(b), s) for b, s in zip(block, shape, strict=True))
    halo = tuple(int(h) for h in halo)
    if len(block) != nd or len(halo) != nd:
        raise UserError(f"block {list(block)} and halo {list(halo)} need {nd} values each")
    for a in range(nd):
        if block[a] < shape[a] and halo[a] < 1:
            raise UserError(f"the watershed halo must be >= 1 along split axis {a}")
    grid = block_slices(shape, block)
    # faces[a][b] = planes at boundary b (between blocks b and b+1 along axis a):
    #   0: lower block's last core plane, 1: lower block's view of the next plane,
    #   2: upper block's first core plane, 3: upper block's view of the plane before
    faces = []
    for a in range(nd):
        nb = max(0, -(-shape[a] // block[a]) - 1)
        faces.append(np.zeros((nb, 4, *shape[:a], *shape[a + 1 :]), np.uint32))
    sizes, score_sum, boxes, votes = [np.zeros(1, np.int64)], [np.zeros(1)], [], []
    boxes.append(np.zeros((1, 2 * nd), np.int64))
    votes.append(np.zeros((1, n_classes), np.int64))
    offset = 0
    for core in progress(grid) if progress is not None else grid:
        ext = tuple(
            slice(max(c.start - h, 0), min(c.stop + h, s))
            for c, h, s in zip(core, halo, shape, strict=True)
        )
        fg = np.asarray(foreground_prob[ext], np.float32)
        lab = seeded_watershed(
            fg,
            np.asarray(distance[ext], np.float32),
            seed_threshold=seed_threshold,
            foreground_threshold=foreground_threshold,
        )
        inner = tuple(
            slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext, strict=True)
        )
        core_lab = lab[inner]
        present = np.unique(core_lab)
        present = present[present > 0]
        lut = np.zeros(int(lab.max(initial=0)) + 1, np.uint32)
        lut[present] = np.arange(offset + 1, offset + 1 + len(present), dtype=np.uint32)
        g = lut[lab]
        g_core = g[inner]
        out[core] = g_core
        local = np.zeros(core_lab.shape, np.int64)
        m = g_core > 0
        local[m] = g_core[m].astype(np.int64) - offset
        n = len(present)
        sizes.append(np.bincount(local.ravel(), minlength=n + 1)[1:])
        score_sum.append(np.bincount(local.ravel(), weights=fg[inner].ravel(), minlength=n + 1)[1:])
        bb = np.zeros((n, 2 * nd), np.int64)
        for k, sl in enumerate(ndimage.find_objects(local, max_label=n)):
            if sl is not None:
                bb[k, :nd] = [s.start + c.start for s, c in zip(sl, core, strict=True)]
                bb[k, nd:] = [s.stop + c.start for s, c in zip(sl, core, strict=True)]
        boxes.append(bb)
        if classes is not None:
            cls = np.asarray(classes[core]).astype(np.int64)
            v = np.bincount(local[m] * n_classes + cls[m], minlength=(n + 1) * n_classes)
            votes.append(v.reshape(n + 1, n_classes)[1:])
        else:
            votes.append(np.zeros((n, n_classes), np.int64))
        for a in range(nd):
            c, e = core[a], ext[a]
            cross = tuple(s for k, s in enumerate(core) if k != a)
            if c.stop < shape[a]:  # the boundary after this block
                b = c.stop // block[a] - 1
                faces[a][(b, 0, *cross)] = np.take(g_core, -1, axis=a)
                faces[a][(b, 1, *cross)] = np.take(g[_cut(inner, a)], c.stop - e.start, axis=a)
            if c.start > 0:  # the boundary before this block
                b = c.start // block[a] - 1
                faces[a][(b, 2, *cross)] = np.take(g_core, 0, axis=a)
                faces[a][(b, 3, *cross)] = np.take(g[_cut(inner, a)], c.start - 1 - e.start, axis=a)
        offset += n
    # joins: both blocks agree that the two voxels across the face are one object
    pa, pb = [], []
    for a in range(nd):
        for f in faces[a]:
            ok = (f[0] > 0) & (f[2] > 0) & (f[1] == f[0]) & (f[3] == f[2])
            pa.append(f[0][ok])
            pb.append(f[2][ok])
    a_ids = np.concatenate(pa) if pa else np.zeros(0, np.uint32)
    b_ids = np.concatenate(pb) if pb else np.zeros(0, np.uint32)
    n_all = offset + 1
    graph = coo_matrix(
        (np.ones(len(a_ids), np.int8), (a_ids.astype(np.int64), b_ids.astype(np.int64))),
        shape=(n_all, n_all),
    )
    _, root = connected_components(graph, directed=False)
    size_all = np.concatenate(sizes)
    root_size = np.bincount(root, weights=size_all, minlength=n_all)
    keep_root = root_size >= max(int(min_size), 1)
    keep_root[root[0]] = False
    # final ids 1..K in the order of each object's first (lowest) global id
    first = np.full(n_all, n_all, np.int64)
    np.minimum.at(first, root, np.arange(n_all))
    roots = np.flatnonzero(keep_root & (first < n_all))
    roots = roots[np.argsort(first[roots])]
    final_of_root = np.zeros(n_all, np.uint32)
    final_of_root[roots] = np.arange(1, len(roots) + 1, dtype=np.uint32)
    final = final_of_root[root]
    final[0] = 0
    count = len(roots)
    for core in grid:
        out[core] = final[np.asarray(out[core])]
    box_all = np.concatenate(boxes)
    vote_all = np.concatenate(votes)
    sc_all = np.concatenate(score_sum)
    k = count + 1
    obj_size = np.bincount(final, weights=size_all, minlength=k)[:k].astype(np.int64)
    bbox = np.zeros((k, 2 * nd), np.int64)
    bbox[:, :nd] = np.iinfo(np.int64).max
    real = (final > 0) & (size_all > 0)
    np.minimum.at(bbox[:, :nd], final[real], box_all[real, :nd])
    np.maximum.at(bbox[:, nd:], final[real], box_all[real, nd:])
    bbox[0] = 0
    vk = np.zeros((k, n_classes), np.int64)
    np.add.at(vk, final, vote_all)
    class_id = vk[:, 1:].argmax(1) + 1 if n_classes > 1 and classes is not None else np.ones(k, int)
    class_id[0] = 0
    score = np.bincount(final, weights=sc_all, minlength=k)[:k] / np.maximum(obj_size, 1)
    joined = int(offset - (len(np.unique(root[1:])) if offset else 0))
    return ChunkedInstances(count, obj_size, bbox, class_id.astype(np.int64), score, joined)


def _cut(inner: tuple[slice, ...], a: int) -> tuple[slice, ...]:
    """``inner`` with axis ``a`` opened to the whole extended block (for the halo planes)."""
    return tuple(slice(None) if k == a else s for k, s in enumerate(inner))


# --------------------------------------------------------------------------- tuning


def grid_search(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    seed_thresholds: Sequence[float],
    foreground_thresholds: Sequence[float],
    min_size: int = 0,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Thresholds maximising F1@0.5 over validation images.

    Parameters
    ----------
    items : (foreground probability, distance, true instances) per validation image
    seed_thresholds, foreground_thresholds : the grid

    Returns
    -------
    best : {"seed_threshold", "foreground_threshold", "f1"}
    table : one row per grid point {seed_threshold, foreground_threshold, f1, n_pred,
        n_true, n_matched}
    """
    from dlpipe.evaluation.instances import evaluate_instance_images

    table = []
    for st in seed_thresholds:
        for ft in foreground_thresholds:
            batch = []
            for fg, dist, truth in items:
                lab = seeded_watershed(
                    fg, dist, seed_threshold=st, foreground_threshold=ft, min_size=min_size
                )
                batch.append(
                    (lab, (lab > 0).astype(np.uint8), truth, (truth > 0).astype(np.uint8), None)
                )
            o = evaluate_instance_images(batch, ["background", "object"])["overall"]
            f1 = float(o["f1"]) if o["f1"] == o["f1"] else 0.0
            table.append(
                {
                    "seed_threshold": float(st),
                    "foreground_threshold": float(ft),
                    "f1": f1,
                    "n_pred": int(o["n_pred"]),
                    "n_true": int(o["n_true"]),
                    "n_matched": int(o["n_matched"]),
                }
            )
    best = max(table, key=lambda r: (r["f1"], -abs(r["seed_threshold"] - 0.5)))
    return {k: best[k] for k in ("seed_threshold", "foreground_threshold", "f1")}, table


def choose_thresholds(
    best: Mapping[str, float],
    table: Sequence[Mapping[str, float]],
    configured: Mapping[str, float],
    min_objects: int,
    min_gain: float = 0.0,
) -> dict[str, Any]:
    """The thresholds to keep after a grid search: the tuned ones only when they earn it.

    A grid search on few validation objects (one unrepresentative image) picks thresholds
    that generalise worse than the configured defaults. The tuned values replace the
    configured ones only when the validation images hold at least ``min_objects`` true
    objects **and** they raise the validation F1@0.5 of the configured values by at least
    ``min_gain`` (a smaller gain is within the noise of a small validation set).

    Parameters
    ----------
    best, table : :func:`grid_search`'s result; ``table`` should hold the configured point
        (without it the gain is not checked)
    configured : ``seed_threshold`` and ``foreground_threshold`` of the config
    min_objects : the fewest validation objects the tuned values are trusted on
    min_gain : the least validation F1 gain over the configured values

    Returns
    -------
    dict
        ``seed_threshold``, ``foreground_threshold``, ``tuned`` (whether the tuned values
        were kept), ``val_objects``, ``val_f1`` (validation F1@0.5 of the kept values, when
        known), ``configured_val_f1`` (when known), ``best`` (the grid's best point) and
        ``note`` when not tuned.
    """
    n_true = int(table[0]["n_true"]) if table else 0
    st, ft = float(configured["seed_threshold"]), float(configured["foreground_threshold"])
    same = [r for r in table if r["seed_threshold"] == st and r["foreground_threshold"] == ft]
    base = float(same[0]["f1"]) if same else None
    out: dict[str, Any] = {"val_objects": n_true, "best": dict(best)}
    if base is not None:
        out["configured_val_f1"] = base
    gain = None if base is None else float(best["f1"]) - base
    moved = (float(best["seed_threshold"]), float(best["foreground_threshold"])) != (st, ft)
    if n_true < min_objects:
        why = f"{n_true} validation objects < tune_min_objects {min_objects}"
    elif gain is not None and gain < min_gain and moved:
        why = (
            f"the best grid point gains {gain:.3f} validation F1 over the configured "
            f"thresholds, < tune_min_gain {min_gain}"
        )
    else:
        return out | {
            "seed_threshold": float(best["seed_threshold"]),
            "foreground_threshold": float(best["foreground_threshold"]),
            "tuned": True,
            "val_f1": float(best["f1"]),
        }
    out |= {
        "seed_threshold": st,
        "foreground_threshold": ft,
        "tuned": False,
        "note": f"not tuned: {why}; the configured thresholds kept",
    }
    if base is not None:
        out["val_f1"] = base
    return out
