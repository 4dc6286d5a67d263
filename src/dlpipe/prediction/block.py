"""The block task of a U-Net run: one output block predicted from the block plus its halo.

Public API
----------
Job
    Everything one block task needs (small and picklable, for dask.distributed).
predict_block
    Predict one output block, write it, mark it done.
region_bounds
    The region read for an output block (block + halo, at least one window).
auto_halo
    The default halo of a model and overlap.
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

__all__ = ["Job", "auto_halo", "load_resources", "predict_block", "region_bounds"]


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
    """
    t0 = time.perf_counter()
    model, info, out, device = load_resources(job)
    bounds = block_bounds(index, info.shape, job.block)
    lo, hi = region_bounds(bounds, info.shape, job.halo, model.mode, model.window, model.context)
    raw = read_region(info.array, tuple(lo), tuple(hi), where=info.path, squeeze=info.squeeze_z)
    x = raw.astype(np.float32)  # normalised in place: one float32 copy of the region
    del raw
    x -= np.float32(info.p0_1)
    x /= np.float32(info.p99_9 - info.p0_1)
    probs, windows = predict_region(
        model.net,
        x,
        model.mode,
        model.window,
        context=model.context,
        overlap=job.overlap,
        batch_size=job.batch_size,
        tta=job.tta,
        device=device,
        amp=job.amp and device.type == "cuda",
    )
    zoff = 0 if model.mode == "3d" else model.context // 2
    crop = tuple(
        slice(b0 - a - (zoff if ax == 0 else 0), b1 - a - (zoff if ax == 0 else 0))
        for ax, ((b0, b1), a) in enumerate(zip(bounds, lo, strict=True))
    )
    del x
    p = probs[(slice(None), *crop)]
    labels = _argmax_uint8(p)
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
    write_block_uncertainty(job.out, index, bounds, slice_uncertainty(p))
    del probs, p
    if job.trim_memory:
        malloc_trim()
    mark_block(job.out, index)
    passes = -(-windows // job.batch_size) * len(tta_ops(model.mode, model.window, job.tta))
    return {
        "voxels": float(labels.size),
        "windows": float(windows),
        "forward_passes": float(passes),
        "seconds": time.perf_counter() - t0,
    }


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


def _argmax_uint8(p: np.ndarray) -> np.ndarray:
    """Argmax over axis 0 of (C, ...) probabilities as uint8, without an int64 array."""
    labels = np.zeros(p.shape[1:], dtype=np.uint8)
    best = p[0].copy()
    for c in range(1, p.shape[0]):
        better = p[c] > best  # ties keep the first class, as np.argmax
        labels[better] = c
        np.maximum(best, p[c], out=best)
    return labels
