"""Reading the training patches of a Zarr volume: the chunk cache, dataset and loader.

Which patches an epoch draws is decided in the main process (:mod:`dlpipe.training.sampling`,
whose names are re-exported here); the DataLoader workers only read, normalise and augment
the Zarr chunks under each patch, through a per-worker cache of decoded chunks.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dlpipe.training.augment import Augment
from dlpipe.training.sampling import (
    MODES,
    LabelIndex,
    PatchSampler,
    PatchSpec,
    max_label,
    scan_labels,
)
from dlpipe.training.stores import TrainingSource

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK_CACHE_MB",
    "MODES",
    "ChunkCache",
    "LabelIndex",
    "PatchDataset",
    "PatchLoader",
    "PatchSampler",
    "PatchSpec",
    "max_label",
    "scan_labels",
]


CHUNK_CACHE_MB = 128
"""Decoded chunks each :class:`PatchDataset` (i.e. each DataLoader worker) keeps."""


class ChunkCache:
    """Least-recently-used cache of the decoded chunks of Zarr arrays, bounded in bytes.

    Every read through zarr costs about 1-2 ms of fixed overhead (its async I/O loop runs
    in another thread) whatever the size; training patches are small and many fall in
    chunks already read. A request reads the chunk-aligned box of its missing chunks in
    one zarr call, keeps those chunks, and assembles the patch from the cached chunks.
    Only the chunks under patches are read, never the whole array.

    Parameters
    ----------
    max_bytes : size bound; 0 disables the cache (every read goes to zarr)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def read(self, key: str, arr: Any, sel: tuple[slice, ...]) -> np.ndarray:
        """``arr[sel]`` as a NumPy array; ``sel`` holds slices (step 1) of the first axes.

        ``key`` names the array (chunks of different arrays are kept apart). Arrays with
        no ``chunks`` (NumPy) are sliced directly.
        """
        chunks = getattr(arr, "chunks", None)
        if self.max_bytes <= 0 or chunks is None or isinstance(arr, np.ndarray):
            return np.asarray(arr[sel])
        shape = tuple(int(n) for n in arr.shape)
        sel = tuple(sel) + (slice(None),) * (len(shape) - len(sel))
        lo = [min(max(s.start or 0, 0), n) for s, n in zip(sel, shape, strict=True)]
        hi = [
            min(n if s.stop is None else max(s.stop, 0), n) for s, n in zip(sel, shape, strict=True)
        ]
        if any(b <= a for a, b in zip(lo, hi, strict=True)):
            return np.asarray(arr[sel])
        grid = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, chunks, strict=True)]
        coords = list(itertools.product(*grid))
        missing = [c for c in coords if (key, c) not in self._chunks]
        if missing:
            self.misses += len(missing)
            c0 = [min(c[i] for c in missing) for i in range(len(shape))]
            c1 = [max(c[i] for c in missing) + 1 for i in range(len(shape))]
            box = tuple(
                slice(a * c, min(b * c, n))
                for a, b, c, n in zip(c0, c1, chunks, shape, strict=True)
            )
            data = np.asarray(arr[box])
            for c in itertools.product(*(range(a, b) for a, b in zip(c0, c1, strict=True))):
                if (key, c) in self._chunks:
                    continue
                part = tuple(
                    slice((i - a) * n, (i - a + 1) * n)
                    for i, a, n in zip(c, c0, chunks, strict=True)
                )
                self._put((key, c), data[part].copy())
        self.hits += len(coords) - len(missing)
        out = np.empty([b - a for a, b in zip(lo, hi, strict=True)], dtype=arr.dtype)
        for c in coords:
            chunk = self._chunks.get((key, c))
            if chunk is None:  # evicted while this request was filled (tiny cache)
                chunk = np.asarray(
                    arr[tuple(slice(i * n, (i + 1) * n) for i, n in zip(c, chunks, strict=True))]
                )
            else:
                self._chunks.move_to_end((key, c))
            src, dst = [], []
            for i, n, a, b in zip(c, chunks, lo, hi, strict=True):
                s0, s1 = max(a, i * n), min(b, (i + 1) * n)
                src.append(slice(s0 - i * n, s1 - i * n))
                dst.append(slice(s0 - a, s1 - a))
            out[tuple(dst)] = chunk[tuple(src)]
        return out

    def _put(self, k: tuple, chunk: np.ndarray) -> None:
        self._chunks[k] = chunk
        self.nbytes += chunk.nbytes
        while self.nbytes > self.max_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self.nbytes -= old.nbytes


class PatchDataset(Dataset):
    """Reads, normalises and augments the patches of a list of :class:`PatchSpec`.

    Parameters
    ----------
    source : the training store (opened lazily in each worker); or None with ``arrays``
    specs : the patches
    mode, patch : as for :class:`PatchSampler`
    context : slices per 2.5D input (odd); 1 otherwise
    augment : applied when not None
    arrays : (image, labels) array-likes to read instead of the store (in-memory baseline)
    cache_mb : decoded chunks kept per dataset copy (each DataLoader worker has its own);
        see :class:`ChunkCache`. 0 reads every patch through zarr.

    Items are ``(image, mask)``: image float32 (C, Y, X) or (1, Z, Y, X); mask int64 (Y, X)
    or (Z, Y, X) with 255 for unlabelled voxels.
    """

    def __init__(
        self,
        source: TrainingSource | None,
        specs: list[PatchSpec],
        mode: str,
        patch: tuple[int, ...],
        context: int = 1,
        augment: Augment | None = None,
        arrays: tuple[Any, Any] | None = None,
        norm: tuple[float, float] | None = None,
        cache_mb: float = CHUNK_CACHE_MB,
    ) -> None:
        self.source, self.specs, self.mode = source, specs, mode
        self.cache = ChunkCache(int(cache_mb * 2**20))
        self.patch3 = tuple(patch) if mode == "3d" else (1, *patch)
        self.context = context if mode == "2.5d" else 1
        self.augment = augment
        self._arrays = arrays
        self._part_labels: Any = None
        if norm is None:
            assert source is not None
            norm = (source.p0_1, source.p99_9)
        self.offset = float(norm[0])
        self.scale = 1.0 / max(float(norm[1]) - float(norm[0]), 1e-12)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.source is not None:
            state["_arrays"] = None  # each worker opens its own handles
            state["_part_labels"] = None
        state["cache"] = ChunkCache(self.cache.max_bytes)  # and fills its own cache
        return state

    def __len__(self) -> int:
        return len(self.specs)

    def arrays(self) -> tuple[Any, Any]:
        if self._arrays is None:
            assert self.source is not None
            self._arrays = self.source.open()
        return self._arrays

    def _labels(self, part: str) -> tuple[str, Any]:
        """Cache key and labels of ``part`` (validation labels of annotations: their own view)."""
        if part == "train":
            return "labels", self.arrays()[1]
        if self._part_labels is None:
            assert self.source is not None
            self._part_labels = self.source.open(part)[1]
        return f"labels:{part}", self._part_labels

    def _plane(self, key: str, arr: Any, axis: str, n: slice, r: slice, c: slice) -> np.ndarray:
        """The box (normal ``n``, rows ``r``, columns ``c``) of the slices along ``axis``."""
        if axis == "z":
            return self.cache.read(key, arr, (n, r, c))
        if axis == "y":
            return self.cache.read(key, arr, (r, n, c)).transpose(1, 0, 2)
        return self.cache.read(key, arr, (r, c, n)).transpose(2, 0, 1)

    def _locate(self, spec: PatchSpec, labels: Any) -> tuple[int, int]:
        """Corner (y, x) for a rare-class spec: centre on a random voxel of that class."""
        ty, tx = (
            (int(c) for c in labels.chunks[1:])
            if hasattr(labels, "chunks")
            else (labels.shape[1], labels.shape[2])
        )
        rng = np.random.default_rng(spec.seed + 1)
        pz, py, px = self.patch3
        zs = slice(spec.z, spec.z + pz)
        tile = self.cache.read(
            "labels",
            labels,
            (zs, slice(spec.ty * ty, (spec.ty + 1) * ty), slice(spec.tx * tx, (spec.tx + 1) * tx)),
        )
        hits = np.argwhere(tile == spec.rare)
        _, ny, nx = labels.shape
        if len(hits) == 0:  # cannot happen with a consistent index; fall back to the tile corner
            cy, cx = spec.ty * ty, spec.tx * tx
        else:
            _, hy, hx = hits[int(rng.integers(len(hits)))]
            cy, cx = spec.ty * ty + int(hy), spec.tx * tx + int(hx)
        y = int(np.clip(cy - py // 2, 0, ny - py))
        x = int(np.clip(cx - px // 2, 0, nx - px))
        return y, x

    def read(self, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        """Normalised image (C, *S) float32, mask (*S) uint8 and the corner used."""
        image = self.arrays()[0]
        key, labels = self._labels(spec.part)
        y, x = (spec.y, spec.x) if spec.rare < 0 else self._locate(spec, labels)
        pz, py, px = self.patch3
        if self.mode == "3d":
            box = (slice(spec.z, spec.z + pz), slice(y, y + py), slice(x, x + px))
            img = self.cache.read("image", image, box)[None]
            mask = self.cache.read(key, labels, box)
        else:
            a, h = spec.axis, self.context // 2
            nz = image.shape["zyx".index(a)]
            z0, z1 = max(0, spec.z - h), min(nz, spec.z + h + 1)
            rows, cols = slice(y, y + py), slice(x, x + px)
            block = self._plane("image", image, a, slice(z0, z1), rows, cols)
            idx = np.clip(np.arange(spec.z - h, spec.z + h + 1), 0, nz - 1) - z0
            img = block[idx]
            mask = self._plane(key, labels, a, slice(spec.z, spec.z + 1), rows, cols)[0]
        img = (img.astype(np.float32) - np.float32(self.offset)) * np.float32(self.scale)
        return img, mask.astype(np.uint8), (spec.z, y, x)

    def __getitem__(self, i: int | tuple[PatchSpec, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i`` of ``specs``, or the patch of a ``(spec, augment)`` pair (the index
        :class:`PatchLoader` sends, so that one set of workers serves every epoch)."""
        if isinstance(i, tuple):
            spec, augment = i
        else:
            spec, augment = self.specs[i], True
        img, mask, _ = self.read(spec)
        if augment and self.augment is not None:
            img, mask = self.augment(img, mask, np.random.default_rng(spec.seed))
        return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(mask.astype(np.int64))


class _Items(Sampler):
    """The indices of the next pass: set before each iteration, in the main process."""

    def __init__(self) -> None:
        self.items: list[tuple[PatchSpec, bool]] = []

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class PatchLoader:
    """One DataLoader for a whole training run: its workers, and the chunk cache each
    holds, persist from epoch to epoch and serve the validation patches too.

    Parameters
    ----------
    dataset : the :class:`PatchDataset` (its own ``specs`` are not used)
    batch_size, workers, pin_memory : as for :class:`torch.utils.data.DataLoader`

    Calling it with a list of specs returns the DataLoader, ready to iterate them in order
    (with augmentation or not); iterate it to the end, or not at all, before the next call.
    New workers every epoch cost about 0.3 s per 40-step epoch on the demo with one
    worker (``benchmarks/train_loader.py``: 7.80 against 8.31 steps/s).
    """

    def __init__(
        self, dataset: PatchDataset, *, batch_size: int, workers: int, pin_memory: bool = False
    ) -> None:
        self._items = _Items()
        self._loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self._items,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=pin_memory,
            prefetch_factor=4 if workers else None,
        )

    def __call__(self, specs: list[PatchSpec], augment: bool = True) -> DataLoader:
        self._items.items = [(s, augment) for s in specs]
        return self._loader
