"""The block task of a U-Net run: one output block predicted from the block plus its halo.

Public API
----------
Job
    Everything one block task needs (small and picklable, for dask.distributed).
predict_block
    Predict one output block, write it, mark it done: :func:`read_block` (region read
    and normalised), :func:`compute_block` (the network), :func:`write_block` (argmax,
    uncertainty, Zarr writes, marker); a local run overlaps the three across blocks.
region_bounds
    The region read for an output block (block + halo, at least one window).
whole_region_bounds
    The region of a block predicted as one window (fully convolutional nets).
auto_halo
    The default halo of sliding windows (a model and overlap).
whole_halo
    The default halo of whole-region windows: the receptive field's reach.
load_resources
    Model, volume and output of a job, loaded once per process.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from dlpipe.errors import UserError
from dlpipe.models.devices import torch_device
from dlpipe.prediction.engine import predict_region, tta_ops
from dlpipe.prediction.memory import malloc_trim
from dlpipe.prediction.model import LoadedModel, load_model
from dlpipe.prediction.output import mark_block, slice_uncertainty, write_block_uncertainty
from dlpipe.prediction.volume import VolumeInfo, open_volume, read_region
from dlpipe.prediction.windows import block_bounds

__all__ = [
    "Job",
    "Prepared",
    "auto_halo",
    "compute_block",
    "load_resources",
    "predict_block",
    "read_block",
    "region_bounds",
    "whole_halo",
    "whole_region_bounds",
    "write_block",
]


@dataclass(frozen=True)
class Job:
    """Everything one block task needs (small and picklable, for dask.distributed)."""

    model_dir: str
    volume: str
    level: str
    out: str
    labels: str
    block: tuple[int, int, int]
    halo: tuple[int, int, int]
    window: tuple[int, ...] | None
    overlap: float
    batch_size: int
    tta: int
    probabilities: bool
    device: str
    amp: bool
    torch_threads: int | None
    digest: str = ""
    trim_memory: bool = False
    whole: bool = False  # one window per block region (fully convolutional nets)
    multiple: int = 1  # every window side a multiple of this (2^(depth-1))


_CACHE: dict[tuple, Any] = {}  # the process cache of load_resources
_LOCK = threading.Lock()


def load_resources(
    job: Job, loaded: LoadedModel | None = None, info: VolumeInfo | None = None
) -> tuple[LoadedModel, VolumeInfo, zarr.Group, torch.device]:
    """Model, input volume and output of a job, loaded once per process (each Dask worker).

    ``loaded`` and ``info``: the model and the opened volume the caller already holds (local
    runs), so that the process keeps one copy of the weights and opens the volume once.
    """
    key = (job.model_dir, job.digest, job.volume, job.out, job.window, job.device)
    with _LOCK:
        if key not in _CACHE:
            if job.torch_threads:
                torch.set_num_threads(job.torch_threads)
            model = loaded or load_model(job.model_dir, list(job.window) if job.window else None)
            if job.digest and model.digest != job.digest:
                raise UserError("the model changed while predicting", path=job.model_dir)
            device = torch_device(job.device, "predict.device")
            model.net.to(device)
            if model.mode != "3d" and device.type == "cpu":
                model.net.to(memory_format=torch.channels_last)  # see engine._memory_format
            if info is None:
                info = open_volume(job.volume, model.mode, model.card, job.level, strict=None)
            out = zarr.open_group(job.out, mode="r+")
            _CACHE.clear()  # one job at a time per process: drop the previous run's model
            _CACHE[key] = (model, info, out, device)
        return _CACHE[key]


def region_bounds(
    bounds: tuple[tuple[int, int], ...],
    shape: tuple[int, ...],
    halo: tuple[int, ...],
    mode: str,
    window: tuple[int, ...],
    context: int,
) -> tuple[list[int], list[int]]:
    """Start and stop (z, y, x) of the region read for an output block (may pass the border).

    The block ``bounds`` widened by ``halo`` on every side, also at the volume border
    (where :func:`read_region` mirrors); along z of a 2D/2.5D model by ``context // 2``.
    A region narrower than the window is widened to the window, shifted to keep within
    the volume padded by the halo where it can.
    """
    lo, hi = [], []
    for ax, ((b0, b1), h, size) in enumerate(zip(bounds, halo, shape, strict=True)):
        if ax == 0 and mode != "3d":
            h, need = context // 2, 0
        else:
            need = window[ax if mode == "3d" else ax - 1]
        a, b = b0 - h, b1 + h
        if b - a < need:
            extra = need - (b - a)
            a, b = a - extra // 2, b + extra - extra // 2
            if a < -h and b < size + h:
                d = min(-h - a, size + h - b)
                a, b = a + d, b + d
            elif b > size + h and a > -h:
                d = min(b - size - h, a + h)
                a, b = a - d, b - d
        lo.append(a)
        hi.append(b)
    return lo, hi


def whole_region_bounds(
    bounds: tuple[tuple[int, int], ...],
    shape: tuple[int, ...],
    halo: tuple[int, ...],
    mode: str,
    context: int,
    multiple: int,
) -> tuple[list[int], list[int]]:
    """Start and stop (z, y, x) of the region of a block predicted as one window.

    The block widened by ``halo`` towards its neighbours only: at the volume border the
    network's own zero padding (as a pass over the whole volume), so that with a halo of
    at least the receptive field's reach each voxel gets the result of one pass over the
    whole volume. Each spatial side is then rounded up to ``multiple`` (2^(depth-1)) with
    real voxels past the end first, then before the start, then mirrored past the end
    (a volume side that is no multiple). Along z of a 2D/2.5D model: ``context // 2``
    mirrored slices, as :func:`region_bounds`.
    """
    lo, hi = [], []
    for ax, ((b0, b1), h, size) in enumerate(zip(bounds, halo, shape, strict=True)):
        if ax == 0 and mode != "3d":
            lo.append(b0 - context // 2)
            hi.append(b1 + context // 2)
            continue
        a, b = max(b0 - h, 0), min(b1 + h, size)
        extra = -(b - a) % multiple
        more = min(extra, size - b)
        b, extra = b + more, extra - more
        more = min(extra, a)
        a, extra = a - more, extra - more
        lo.append(a)
        hi.append(b + extra)
    return lo, hi


@dataclass
class Prepared:
    """A block's region, read and normalised (float32), and where it lies."""

    index: tuple[int, int, int]
    bounds: tuple[tuple[int, int], ...]
    lo: list[int]
    x: np.ndarray
    window: tuple[int, ...]
    t0: float


def read_block(job: Job, index: tuple[int, int, int]) -> Prepared:
    """Read output block ``index``'s region (block + halo, mirrored past the border where
    :func:`region_bounds` says) and normalise it with the card's statistics."""
    t0 = time.perf_counter()
    model, info, _, _ = load_resources(job)
    bounds = block_bounds(index, info.shape, job.block)
    if job.whole:
        lo, hi = whole_region_bounds(
            bounds, info.shape, job.halo, model.mode, model.context, job.multiple
        )
        window = tuple(b - a for a, b in zip(lo, hi, strict=True))
        window = window if model.mode == "3d" else window[1:]
    else:
        window = tuple(model.window)
        lo, hi = region_bounds(bounds, info.shape, job.halo, model.mode, window, model.context)
    raw = read_region(info.array, tuple(lo), tuple(hi), where=info.path, squeeze=info.squeeze_z)
    x = raw.astype(np.float32)  # normalised in place: one float32 copy of the region
    del raw
    x -= np.float32(info.p0_1)
    x /= np.float32(info.p99_9 - info.p0_1)
    return Prepared(index, bounds, lo, x, window, t0)


def compute_block(job: Job, prep: Prepared) -> tuple[np.ndarray, int]:
    """The class probabilities of a prepared region, cropped to its block, and the number
    of windows run."""
    model, _, _, device = load_resources(job)
    probs, windows = predict_region(
        model.net,
        prep.x,
        model.mode,
        prep.window,
        context=model.context,
        overlap=job.overlap,
        batch_size=job.batch_size,
        tta=job.tta,
        device=device,
        amp=job.amp and device.type == "cuda",
    )
    prep.x = np.empty(0, dtype=np.float32)  # the region is no longer needed
    zoff = 0 if model.mode == "3d" else model.context // 2
    crop = tuple(
        slice(b0 - a - (zoff if ax == 0 else 0), b1 - a - (zoff if ax == 0 else 0))
        for ax, ((b0, b1), a) in enumerate(zip(prep.bounds, prep.lo, strict=True))
    )
    return probs[(slice(None), *crop)], windows


def write_block(job: Job, prep: Prepared, p: np.ndarray, windows: int) -> dict[str, float]:
    """Argmax (and probabilities) of a block into its own chunks, its per-slice
    uncertainty sums, then its marker ``OUT/.dlpipe_blocks/<z_y_x>`` last."""
    model, info, out, _ = load_resources(job)
    index, bounds = prep.index, prep.bounds
    labels, sums = _labels_and_uncertainty(p)
    sel = tuple(slice(b0, b1) for b0, b1 in bounds)
    lab_arr = out[f"labels/{job.labels}/0"]
    if info.squeeze_z:
        lab_arr[sel[1:]] = labels[0]
    else:
        lab_arr[sel] = labels
    if job.probabilities:
        prob_arr = out["probabilities/0"]
        if info.squeeze_z:
            prob_arr[(slice(None), *sel[1:])] = p[:, 0].astype(np.float16)
        else:
            prob_arr[(slice(None), *sel)] = p.astype(np.float16)
    write_block_uncertainty(job.out, index, bounds, sums)
    del p
    if job.trim_memory:
        malloc_trim()
    mark_block(job.out, index)
    elements = len(tta_ops(model.mode, prep.window, job.tta))
    return {
        "tta_elements": float(elements),
        "voxels": float(labels.size),
        "windows": float(windows),
        "forward_passes": float(-(-windows // job.batch_size) * elements),
        "seconds": time.perf_counter() - prep.t0,
    }


def predict_block(job: Job, index: tuple[int, int, int]) -> dict[str, float]:
    """Predict output block ``index`` from the block plus its halo, write it, mark it done.

    Reads the block plus ``halo`` voxels on each side: real voxels of its neighbours inside
    the volume, mirrored (reflect, edge voxel not repeated) past the volume border, so that
    a border block sees the same kind of context as an inner one and its result is that of
    a prediction of the reflect-padded volume. For a 2.5D input the k slices are mirrored
    the same way at the first and last slice. A region smaller than one window is widened
    (real voxels first). It is normalised with the card's statistics, covered by
    Gaussian-blended sliding windows, the halo is cropped and the argmax (and
    probabilities) written into the block's own chunks, with the block's per-slice sums of
    the uncertainty (1 - margin, before the argmax; :func:`~dlpipe.prediction.output.
    slice_uncertainty`). The marker ``OUT/.dlpipe_blocks/<z_y_x>`` is written last.

    With ``job.whole`` (a fully convolutional net, the default) the region is one window
    (:func:`whole_region_bounds`: no mirroring at the volume border but the network's zero
    padding; the halo is the receptive field's reach, :func:`whole_halo`).
    """
    prep = read_block(job, index)
    p, windows = compute_block(job, prep)
    return write_block(job, prep, p, windows)


def auto_halo(model: LoadedModel, overlap: float) -> tuple[int, int, int]:
    """Default halo: ``ceil(window * overlap / 2)`` per axis (at least 1).

    Inside a one-pass sliding window the worst-placed voxel sits ``window * overlap / 2``
    from the edge of its best window (half the overlap of two neighbours); this halo gives
    a block-face voxel at least that much context. Along z of a 2D/2.5D model: k // 2.
    """
    sides = [max(1, math.ceil(w * overlap / 2)) for w in model.window]
    if model.mode == "3d":
        return tuple(sides)
    return (model.context // 2, *sides)


def whole_halo(
    model: LoadedModel, block: tuple[int, ...], shape: tuple[int, ...], reach: int, multiple: int
) -> tuple[int, int, int]:
    """Default halo of whole-region windows: the receptive field's ``reach`` rounded up to
    ``multiple`` (so that regions start on the pooling grid of the whole volume), 0 along
    an axis the block spans whole (no neighbour to be seamless with). Along z of a 2D/2.5D
    model: ``context // 2``."""
    h = -(-reach // multiple) * multiple
    sides = [0 if b >= s else h for b, s in zip(block, shape, strict=True)]
    if model.mode == "3d":
        return tuple(sides)
    return (model.context // 2, *sides[1:])


def _labels_and_uncertainty(
    p: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Argmax (uint8, ties to the first class as ``np.argmax``) and the per-slice sums of
    the uncertainty 1 - margin (:func:`~dlpipe.prediction.output.slice_uncertainty`) of a
    block's (C, z, y, x) probabilities, in torch's threads (no int64 or float64 volume)."""
    if p.shape[0] < 2 or p.shape[0] > 255:
        return _argmax_uint8(p), slice_uncertainty(p)
    t = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    labels = t.argmax(dim=0).to(torch.uint8).numpy()
    top = t.topk(2, dim=0, sorted=True).values
    u = 1.0 - (top[0] - top[1])
    del top
    sums = tuple(
        torch.sum(u, dim=axes, dtype=torch.float64).numpy() for axes in ((1, 2), (0, 2), (0, 1))
    )
    return labels, sums


def _argmax_uint8(p: np.ndarray) -> np.ndarray:
    """Argmax over axis 0 of (C, ...) probabilities as uint8, without an int64 array."""
    labels = np.zeros(p.shape[1:], dtype=np.uint8)
    best = p[0].copy()
    for c in range(1, p.shape[0]):
        better = p[c] > best  # ties keep the first class, as np.argmax
        labels[better] = c
        np.maximum(best, p[c], out=best)
    return labels
