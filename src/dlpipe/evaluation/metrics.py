"""Confusion matrix (accumulated chunk by chunk, exact int64) and the scores derived from it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.labels import IGNORE_INDEX
from dlpipe.postprocess.components import label_chunked


def _slabs(z_ranges: Sequence[tuple[int, int]], step: int) -> list[tuple[int, int]]:
    out = []
    for z0, z1 in z_ranges:
        z = z0
        while z < z1:
            nxt = min((z // step + 1) * step, z1)  # aligned to the chunk grid
            out.append((z, nxt))
            z = nxt
    return out


PIECE = 1 << 20  # voxels counted at once: the uint16 index and bincount's copy stay in cache


def _count_pairs(t: np.ndarray, p: np.ndarray, full: np.ndarray, buf: np.ndarray) -> None:
    """Add the counts of (t, p) pairs, (n,) uint8 each, to ``full`` (65536,) at t * 256 + p."""
    for i in range(0, t.size, PIECE):
        a, b = t[i : i + PIECE], p[i : i + PIECE]
        idx = buf[: a.size]
        np.left_shift(a, 8, out=idx, dtype=np.uint16)
        np.bitwise_or(idx, b, out=idx)
        full += np.bincount(idx, minlength=65536)


def _as_u8(block: np.ndarray, what: str) -> np.ndarray:
    if block.dtype == np.uint8:
        return block
    if block.dtype.kind not in "ui":
        raise UserError(f"{what} labels must be integers, got {block.dtype}")
    if block.size and (block.min() < 0 or block.max() > 255):
        raise UserError(f"{what} labels must lie in 0..255, found {block.min()}..{block.max()}")
    return block.astype(np.uint8)


def confusion_matrix(
    pred: Any,
    truth: Any,
    *,
    z_ranges: Sequence[tuple[int, int]] | None = None,
    n_classes: int | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    slab: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Confusion matrix of two label volumes, read slab by slab along z.

    Parameters
    ----------
    pred, truth : array-like (z, y, x) (or (y, x)) of integer labels in 0..255, same shape;
        Zarr arrays are read one chunk-aligned z-slab at a time.
    z_ranges : half-open z-ranges to count (default: all).
    n_classes : number of classes; default the largest label seen (other than ``ignore_index``)
        plus one.
    ignore_index : voxels whose truth has this value are not counted. None: no ignore value.
    slab : z-slices per read (default: the prediction's z-chunk).

    Returns
    -------
    ndarray (n_classes, n_classes) int64
        ``cm[t, p]`` = voxels with truth ``t`` and prediction ``p``.

    Raises
    ------
    UserError
        Shapes differ, or a label (other than the ignore value) is not below ``n_classes``.
    """
    if tuple(pred.shape) != tuple(truth.shape):
        raise UserError(
            f"prediction shape {tuple(pred.shape)} differs from truth {tuple(truth.shape)}"
        )
    if len(pred.shape) == 2:
        pred, truth = _Expand(pred), _Expand(truth)
    depth = pred.shape[0]
    z_ranges = list(z_ranges) if z_ranges is not None else [(0, depth)]
    for z0, z1 in z_ranges:
        if not 0 <= z0 < z1 <= depth:
            raise UserError(f"z-range [{z0}, {z1}) is empty or outside the volume (depth {depth})")
    chunks = getattr(pred, "chunks", None)
    step = slab or (
        chunks[0]
        if isinstance(chunks, tuple)
        else max(1, 2**24 // max(1, int(np.prod(pred.shape[1:]))))
    )
    full = np.zeros(256 * 256, np.int64)
    buf = np.empty(PIECE, np.uint16)
    slabs = _slabs(z_ranges, step)

    def read(zz: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(pred[zz[0] : zz[1]]), np.asarray(truth[zz[0] : zz[1]])

    # read the next slab in a thread (decompression releases the GIL) while counting this one
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, slabs[0]) if slabs else None
        bar = tqdm(slabs, desc="confusion", disable=None if progress else True, leave=False)
        for i, _ in enumerate(bar):
            p_raw, t_raw = pending.result()
            pending = pool.submit(read, slabs[i + 1]) if i + 1 < len(slabs) else None
            p = _as_u8(p_raw, "predicted")
            t = _as_u8(t_raw, "true")
            _count_pairs(t.ravel(), p.ravel(), full, buf)
    full = full.reshape(256, 256)
    if ignore_index is not None:
        full[ignore_index, :] = 0
    seen_t = np.flatnonzero(full.sum(1))
    seen_p = np.flatnonzero(full.sum(0))
    if ignore_index is not None and ignore_index in seen_p:
        # a predicted ignore value is a real (wrong) prediction: flag it
        raise UserError(f"the prediction contains the ignore value {ignore_index}")
    top = int(max([-1, *seen_t.tolist(), *seen_p.tolist()])) + 1
    if n_classes is None:
        n_classes = max(top, 1)
    elif top > n_classes:
        raise UserError(f"label {top - 1} found but only {n_classes} classes are configured")
    return full[:n_classes, :n_classes].copy()


class _Expand:
    """A (y, x) array seen as (1, y, x)."""

    def __init__(self, arr: Any) -> None:
        self.arr = arr
        self.shape = (1, *arr.shape)
        self.chunks = (1,)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.arr)[None][key]


def _div(a: float, b: float) -> float:
    return float(a / b) if b else math.nan


def jaccard(cm: np.ndarray) -> np.ndarray:
    """Per-class Jaccard TP / (TP + FP + FN) from a confusion matrix; NaN where the class is
    neither present nor predicted.

    Parameters
    ----------
    cm : (C, C) counts, rows truth, columns prediction

    Returns
    -------
    ndarray (C,) float64
    """
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def scores(cm: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class Jaccard, Dice, precision, recall and volume fractions from a confusion matrix.

    Jaccard J = TP / (TP + FP + FN) = |A∩B| / (|A| + |B| - |A∩B|); Dice = 2TP / (2TP + FP + FN);
    precision = TP / (TP + FP); recall = TP / (TP + FN). A class absent from both truth and
    prediction has J = Dice = NaN (JSON ``null``) and is left out of ``mean_jaccard`` and
    ``mean_dice``; precision is NaN when nothing is predicted as the class, recall when the
    class is absent from the truth.

    Returns
    -------
    dict
        ``per_class`` (name -> metrics), ``mean_jaccard``, ``mean_dice``, ``accuracy``,
        ``voxels``, ``confusion`` (rows truth, columns prediction) and ``classes``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    names = list(names) if names is not None else [f"class_{i}" for i in range(n)]
    if len(names) < n:
        names += [f"class_{i}" for i in range(len(names), n)]
    total = int(cm.sum())
    jac_c = jaccard(cm)
    per_class = {}
    for c in range(n):
        tp = int(cm[c, c])
        fp = int(cm[:, c].sum()) - tp
        fn = int(cm[c, :].sum()) - tp
        per_class[names[c]] = {
            "jaccard": float(jac_c[c]),
            "dice": _div(2 * tp, 2 * tp + fp + fn),
            "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn),
            "fraction_pred": _div(tp + fp, total),
            "fraction_true": _div(tp + fn, total),
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }
    jac = [v["jaccard"] for v in per_class.values() if not math.isnan(v["jaccard"])]
    dice = [v["dice"] for v in per_class.values() if not math.isnan(v["dice"])]
    return {
        "classes": names[:n],
        "per_class": per_class,
        "mean_jaccard": float(np.mean(jac)) if jac else math.nan,
        "mean_dice": float(np.mean(dice)) if dice else math.nan,
        "accuracy": _div(int(np.trace(cm)), total),
        "voxels": total,
        "confusion": cm.tolist(),
    }


class _ErrorView:
    """Lazy (z, y, x) view: ``1 + pred`` where pred != truth (false positives of that class),
    or ``1 + truth`` (false negatives), 0 elsewhere and where truth is ignored."""

    def __init__(self, pred: Any, truth: Any, z0: int, z1: int, kind: str, ignore: int | None):
        self.pred, self.truth, self.z0, self.kind, self.ignore = pred, truth, z0, kind, ignore
        self.shape = (z1 - z0, *pred.shape[1:])
        ch = getattr(pred, "chunks", None)
        self.chunks = (
            tuple(min(c, s) for c, s in zip(ch, self.shape, strict=True))
            if isinstance(ch, tuple)
            else tuple(min(64, s) for s in self.shape)
        )

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        key = (slice(key[0].start + self.z0, key[0].stop + self.z0), *key[1:])
        p = np.asarray(self.pred[key]).astype(np.int32)
        t = np.asarray(self.truth[key]).astype(np.int32)
        wrong = p != t
        if self.ignore is not None:
            wrong &= t != self.ignore
        return np.where(wrong, 1 + (p if self.kind == "fp" else t), 0)


def error_blobs(
    pred: Any,
    truth: Any,
    n_classes: int,
    names: Sequence[str],
    *,
    z_ranges: Sequence[tuple[int, int]] | None = None,
    ignore_index: int | None = IGNORE_INDEX,
    connectivity: int = 26,
) -> dict[str, dict[str, Any]]:
    """False-positive and false-negative connected components per class, and their sizes.

    A false-positive blob of class c is a connected set of voxels predicted c whose truth is
    another (non-ignored) class; false-negative blobs likewise for voxels truly c predicted
    otherwise. Components are found chunk by chunk within each z-range.

    Returns
    -------
    dict
        name -> {"fp_blobs", "fp_max", "fp_mean", "fp_median", "fn_blobs", ...} (sizes in voxels).
    """
    if len(pred.shape) == 2:
        pred, truth = _Expand(pred), _Expand(truth)
        connectivity = {4: 6, 8: 18}.get(connectivity, connectivity)
    z_ranges = list(z_ranges) if z_ranges is not None else [(0, pred.shape[0])]
    sizes: dict[tuple[str, int], list[np.ndarray]] = {}
    for z0, z1 in z_ranges:
        for kind in ("fp", "fn"):
            view = _ErrorView(pred, truth, z0, z1, kind, ignore_index)
            comp = label_chunked(
                view,
                list(range(1, n_classes + 1)),
                connectivity=connectivity,
                out=False,
                progress=False,
            )
            for c in range(n_classes):
                sizes.setdefault((kind, c), []).append(comp.voxels[1:][comp.phase[1:] == c + 1])
    result: dict[str, dict[str, Any]] = {}
    for c in range(n_classes):
        entry: dict[str, Any] = {}
        for kind in ("fp", "fn"):
            s = np.concatenate(sizes[(kind, c)])
            entry[f"{kind}_blobs"] = int(s.size)
            entry[f"{kind}_max"] = int(s.max()) if s.size else 0
            entry[f"{kind}_mean"] = float(s.mean()) if s.size else 0.0
            entry[f"{kind}_median"] = float(np.median(s)) if s.size else 0.0
        result[names[c]] = entry
    return result
