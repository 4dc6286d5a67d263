"""Block-wise prediction of a tiled volume into OME-Zarr, with Dask, resumable."""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from dlpipe._io import write_text_atomic
from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.models import torch_device
from dlpipe.prediction.engine import predict_region, tta_ops
from dlpipe.prediction.model import LoadedModel, load_model
from dlpipe.prediction.volume import VolumeInfo, open_volume, read_region
from dlpipe.prediction.windows import block_bounds, block_grid

log = logging.getLogger("dlpipe.prediction")

MANIFEST = ".dlpipe_manifest.json"
MARKERS = ".dlpipe_blocks"
COMPLETE = ".dlpipe_complete"
DEFAULTS: dict[str, Any] = {
    k: v
    for k, v in defaults()["predict"].items()
    if k not in ("model", "slabs", "scheduler", "maskrcnn")  # the CLI's; maskrcnn: its own
}
"""The ``predict`` section's defaults, from the config schema (the one source of defaults)."""


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


_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _resources(
    job: Job, loaded: LoadedModel | None = None
) -> tuple[LoadedModel, zarr.Array, VolumeInfo, zarr.Group, torch.device]:
    """Model and arrays of a job, loaded once per process (each Dask worker).

    ``loaded``: the model the caller already holds (local runs), so that the process does
    not keep two copies of the weights.
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
            info = open_volume(job.volume, model.mode, model.card, job.level)
            arr = zarr.open_group(job.volume, mode="r")[job.level]
            out = zarr.open_group(job.out, mode="r+")
            _CACHE.clear()  # one job at a time per process: drop the previous run's model
            _CACHE[key] = (model, arr, info, out, device)
        return _CACHE[key]


def block_name(index: tuple[int, ...]) -> str:
    """Marker file name of output block ``index``."""
    return "_".join(str(i) for i in index)


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
    probabilities) written into the block's own chunks. The marker
    ``OUT/.dlpipe_blocks/<z_y_x>`` is written last.
    """
    t0 = time.perf_counter()
    model, arr, info, out, device = _resources(job)
    bounds = block_bounds(index, info.shape, job.block)
    lo, hi = region_bounds(bounds, info.shape, job.halo, model.mode, model.window, model.context)
    raw = read_region(arr, tuple(lo), tuple(hi), where=info.path, squeeze=info.squeeze_z)
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
    del probs, p
    if job.trim_memory:
        _malloc_trim()
    (Path(job.out) / MARKERS / block_name(index)).write_text("")
    passes = -(-windows // job.batch_size) * len(tta_ops(model.mode, model.window, job.tta))
    return {
        "voxels": float(labels.size),
        "windows": float(windows),
        "forward_passes": float(passes),
        "seconds": time.perf_counter() - t0,
    }


def _auto_halo(model: LoadedModel, overlap: float) -> tuple[int, int, int]:
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


RUN_OVERHEAD_MB = 64.0
"""Resident memory a run adds once, before its blocks' working sets (measured on CPU:
Dask's scheduler threads, zarr's I/O loop and codec buffers, torch's kernels and thread
pool warmed up by the first forward pass)."""


def _estimate_bytes(
    model: LoadedModel,
    block,
    halo,
    batch: int,
    n_classes: int,
    *,
    itemsize: int = 4,
    chunks=None,
    probabilities: bool = False,
) -> int:
    """Working set of one block task in bytes (what each extra block running at once adds).

    Region (block + halo, at least one window per axis): the raw read and its decoded
    input chunks, the float32 normalised copy, the (C, region) float32 probability sum
    and the weight sum; per block voxel the uint8 labels, the argmax's running maximum
    and the float16 probabilities; the network's activations of one batch (about 12
    float32 maps of ``base_filters`` channels per window voxel for a U-Net, plus the
    softmax outputs). Calibrated against measured peak RSS (benchmarks/predict.py).
    """
    win = [1, *model.window] if model.mode != "3d" else list(model.window)
    side = [max(b + 2 * h, w) for b, h, w in zip(block, halo, win, strict=True)]
    region = int(np.prod(side))
    chunk = list(chunks) if chunks is not None else [1, 1, 1]
    read = int(np.prod([s + c - 1 for s, c in zip(side, chunk[-3:], strict=False)]))
    nblock = int(np.prod(block))
    nwin = int(np.prod(model.window))
    filters = int(model.card["architecture"].get("base_filters", 32))
    act = batch * nwin * model.context * 4 + batch * nwin * (filters * 12 + n_classes * 3) * 4
    per_block = nblock * (1 + 4 + (2 * n_classes if probabilities else 0))
    return region * (itemsize + 4 * (n_classes + 2)) + 2 * read * itemsize + per_block + act


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - not glibc
        return None


def _limit_malloc() -> None:
    """Stop glibc's malloc from keeping freed block buffers (a memory budget is set).

    At most 2 arenas (threads otherwise get their own, each keeping its freed memory),
    and allocations of 4 MiB or more mapped on their own, so that they go back to the
    system when freed (glibc otherwise raises that threshold as large buffers are freed).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD (also stops its dynamic growth)


def _malloc_trim() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _rss_mb() -> float:
    """Resident memory of this process now, in MiB (VmRSS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return _peak_rss_mb()


def _ngff_label_attrs(name: str, classes: list[str], scale: list[float], ndim: int) -> dict:
    axes = [{"name": a, "type": "space"} for a in ("z", "y", "x")][-ndim:]
    palette = [
        [0, 0, 0, 0],
        [230, 25, 75, 255],
        [60, 180, 75, 255],
        [0, 130, 200, 255],
        [255, 225, 25, 255],
        [145, 30, 180, 255],
        [70, 240, 240, 255],
    ]
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    "axes": axes,
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": scale[-ndim:]}
                            ],
                        }
                    ],
                }
            ],
            "image-label": {
                "version": "0.5",
                "colors": [
                    {"label-value": i, "rgba": palette[i % len(palette)]}
                    for i in range(len(classes))
                ],
                "properties": [{"label-value": i, "class": c} for i, c in enumerate(classes)],
            },
        }
    }


def _manifest(model: LoadedModel, info: VolumeInfo, job: Job) -> dict[str, Any]:
    return {
        "model_hash": model.digest,
        "layout": {
            "shape": list(info.shape),
            "block": list(job.block),
            "halo": list(job.halo),
            "window": list(model.window),
            "overlap": job.overlap,
            "tta": job.tta,
            "probabilities": job.probabilities,
            "labels": job.labels,
        },
        "volume": {
            "path": str(Path(info.path).resolve()),
            "level": info.level,
            "shape": list(info.shape),
            "dtype": info.dtype,
            "normalisation": [info.p0_1, info.p99_9],
        },
    }


def _prepare_output(
    out: Path,
    model: LoadedModel,
    info: VolumeInfo,
    job: Job,
    manifest: dict,
    *,
    overwrite: bool,
    resume: bool,
) -> set[str]:
    """Create ``out`` (or check it for a resume); return the names of blocks already done."""
    if out.exists():
        if resume and (out / MANIFEST).is_file():
            old = json.loads((out / MANIFEST).read_text())
            clash = next(
                (
                    what
                    for key, what in (
                        ("model_hash", "another model"),
                        ("layout", "another block layout"),
                        ("volume", "another volume"),
                    )
                    if old.get(key) != manifest[key]
                ),
                None,
            )
            if clash is None:
                markers = out / MARKERS
                return {m.name for m in markers.iterdir()} if markers.is_dir() else set()
            if not overwrite:
                raise UserError(
                    f"refusing to resume: the output was started with {clash} "
                    "(use --overwrite to start again)",
                    path=out,
                )
            log.info("predict: %s: started with %s; starting again", out, clash)
        if not overwrite:
            hint = " or --resume to finish an interrupted run" if (out / MANIFEST).is_file() else ""
            raise UserError(f"output exists (use --overwrite to replace it{hint})", path=out)
        shutil.rmtree(out)
    ndim = 2 if info.squeeze_z else 3
    shape = info.shape[1:] if info.squeeze_z else info.shape
    chunks = tuple(min(b, s) for b, s in zip(job.block[-ndim:], shape, strict=True))
    root = zarr.open_group(out, mode="w")
    root.attrs.update(
        {"dlpipe": {"prediction": manifest, "classes": model.classes, "complete": False}}
    )
    labels = root.create_group("labels")
    labels.attrs.update({"ome": {"version": "0.5", "labels": [job.labels]}})
    lab = labels.create_group(job.labels)
    lab.attrs.update(_ngff_label_attrs(job.labels, model.classes, info.scale, ndim))
    lab.create_array(
        "0",
        shape=shape,
        chunks=chunks,
        dtype="uint8",
        fill_value=0,
        dimension_names=["z", "y", "x"][-ndim:],
    )
    if job.probabilities:
        n = len(model.classes)
        prob = root.create_group("probabilities")
        space = [{"name": a, "type": "space"} for a in ("z", "y", "x")][-ndim:]
        axes = [{"name": "c", "type": "channel"}, *space]
        prob.attrs.update(
            {
                "ome": {
                    "version": "0.5",
                    "multiscales": [
                        {
                            "name": "probabilities",
                            "axes": axes,
                            "datasets": [
                                {
                                    "path": "0",
                                    "coordinateTransformations": [
                                        {"type": "scale", "scale": [1.0, *info.scale[-ndim:]]}
                                    ],
                                }
                            ],
                        }
                    ],
                },
                "dlpipe": {"classes": model.classes},
            }
        )
        prob.create_array(
            "0",
            shape=(n, *shape),
            chunks=(n, *chunks),
            dtype="float16",
            fill_value=0,
            dimension_names=["c", *["z", "y", "x"][-ndim:]],
        )
    (out / MARKERS).mkdir()
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return set()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; ru_maxrss where absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_local(job: Job, todo: list, workers: int, progress: bool) -> list[dict]:
    """Dask's threaded scheduler, ``workers`` blocks at once, in waves of tasks.

    The graph is built one wave (``max(32, 8 * workers)`` blocks) at a time, so that the
    scheduler's memory does not grow with the number of blocks (the volume's size).
    """
    import dask
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="predict", unit="block", disable=None if progress else True)

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if isinstance(result, dict) and "windows" in result:
                bar.update(1)

    wave = max(32, 8 * workers)
    results: list[dict] = []
    try:
        with _Bar():
            for i in range(0, len(todo), wave):
                tasks = [
                    dask.delayed(predict_block, pure=False)(job, idx) for idx in todo[i : i + wave]
                ]
                results.extend(dask.compute(*tasks, scheduler="threads", num_workers=workers))
        return results
    finally:
        bar.close()


def _run_distributed(job: Job, todo: list, address: str, progress: bool) -> list[dict]:
    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = [client.submit(predict_block, job, idx, pure=False) for idx in todo]
        results = []
        with tqdm(
            total=len(todo), desc="predict", unit="block", disable=None if progress else True
        ) as bar:
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
        return results
    finally:
        client.close()


def _workers_in_budget(budget_mb: float, est: int, workers: int) -> int:
    """Blocks that may run at once so that the process's total RSS stays under the budget.

    Raises
    ------
    UserError
        The budget is below what the process already holds plus the run's overhead plus
        one block.
    """
    in_use = _rss_mb()
    block_mb = est / 2**20
    need = in_use + RUN_OVERHEAD_MB + block_mb
    if budget_mb < need:
        extra = ", MLflow" if "mlflow" in sys.modules else ""
        raise UserError(
            f"predict.memory_budget_mb {budget_mb:.0f} MiB is below the ~{need:.0f} MiB the "
            f"process needs ({in_use:.0f} MiB in use by Python, torch{extra} and the model, "
            f"~{RUN_OVERHEAD_MB:.0f} MiB to start the run, ~{block_mb:.0f} MiB per block); the "
            "budget is the total peak RSS: raise it, or use a smaller predict.block or batch_size"
        )
    fit = int((budget_mb - in_use - RUN_OVERHEAD_MB) // block_mb)
    if fit < workers:
        log.warning("predict: %d threads would exceed the memory budget; using %d", workers, fit)
    return max(1, min(workers, fit))


def predict_volume(
    model_dir: str | Path,
    volume: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    scheduler: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    slab: tuple[int, int] | None = None,
    prepare_only: bool = False,
) -> dict[str, Any]:
    """Predict a tiled volume block by block into ``OUT.zarr`` (OME-Zarr labels).

    Parameters
    ----------
    model_dir : folder of ``card.json`` + ``weights.pt`` from ``dlpipe train``
    volume : ``VOL.zarr`` (image level ``params['level']``, (z, y, x))
    out : ``PRED.zarr``: ``labels/<labels_name>/0`` uint8 (z, y, x) argmax and, with
        ``probabilities``, ``probabilities/0`` float16 (c, z, y, x); chunks = blocks
    params : the ``predict`` config section (see :data:`DEFAULTS`)
    scheduler : address of a ``dask.distributed`` scheduler; None = local threads
    overwrite : replace an existing output
    resume : finish an interrupted run with the same model and layout (with
        ``overwrite`` too: resume when they match, else start again)
    slab : (i, n): only the i-th of n contiguous z-slabs of blocks (one job of a split
        run); the output must have been created by a ``prepare_only`` call and is marked
        complete by :func:`gather` once every slab has run
    prepare_only : create (or check, when resuming) the output and its manifest, predict
        nothing

    Returns
    -------
    dict
        Summary: blocks, blocks_done_before, blocks_predicted, voxels, seconds,
        voxels_per_s, windows, forward_passes (batches of windows times TTA elements),
        tta_elements, peak_rss_mb (VmHWM), estimated_block_mb, workers, complete.
    """
    p = dict(DEFAULTS) | dict(params or {})
    t0 = time.perf_counter()
    model = load_model(model_dir, p["window"])
    info = open_volume(volume, model.mode, model.card, p["level"])
    block = tuple(int(b) for b in p["block"])
    if len(block) != 3 or min(block) < 1:
        raise UserError(f"predict.block must be three positive sides (z, y, x), got {list(block)}")
    halo = (
        tuple(int(h) for h in p["halo"])
        if p["halo"] is not None
        else _auto_halo(model, float(p["overlap"]))
    )
    if model.mode != "3d":
        halo = (model.context // 2, *halo[1:])
    job = Job(
        str(Path(model_dir)),
        str(Path(volume)),
        p["level"],
        str(Path(out)),
        p["labels_name"],
        block,
        halo,
        tuple(model.window),
        float(p["overlap"]),
        int(p["batch_size"]),
        int(p["tta"]),
        bool(p["probabilities"]),
        p["device"],
        bool(p["amp"]),
        p["torch_threads"],
        model.digest,
    )
    torch_device(job.device, "predict.device")
    manifest = _manifest(model, info, job)
    manifest["layout"]["mode"] = model.mode
    out = Path(out)
    if slab is not None:
        i, n = slab
        if not 0 <= i < n:
            raise UserError(f"slab {i} of {n}: need 0 <= I < N")
        if not (out / MANIFEST).is_file():
            raise UserError("a slab job needs the output prepared first (--prepare)", path=out)
        resume, overwrite = True, False
    done = _prepare_output(out, model, info, job, manifest, overwrite=overwrite, resume=resume)
    grid = block_grid(info.shape, block)
    if slab is not None:
        nzb = -(-info.shape[0] // block[0])
        grid = [g for g in grid if g[0] * slab[1] // nzb == slab[0]]
    if prepare_only:
        grid = []
    todo = [i for i in grid if block_name(i) not in done]
    workers = max(1, int(p["threads"]))
    arr0 = zarr.open_group(info.path, mode="r")[info.level]
    chunks = (1, *arr0.chunks) if info.squeeze_z else tuple(arr0.chunks)
    est = _estimate_bytes(
        model,
        block,
        halo,
        job.batch_size,
        len(model.classes),
        itemsize=np.dtype(info.dtype).itemsize,
        chunks=chunks,
        probabilities=job.probabilities,
    )
    budget = float(p["memory_budget_mb"]) if p["memory_budget_mb"] else None
    if budget is not None and not scheduler:
        workers = _workers_in_budget(budget, est, workers)
        _limit_malloc()
        job = replace(job, trim_memory=True)
    if not scheduler:
        _resources(job, model)  # the workers use this model: one copy of the weights
    log.info(
        "predict: %d of %d blocks to do (%d done before), block %s, halo %s, window %s",
        len(todo),
        len(grid),
        len(grid) - len(todo),
        list(block),
        list(halo),
        list(model.window),
    )
    if todo:
        results = (
            _run_distributed(job, todo, scheduler, progress)
            if scheduler
            else _run_local(job, todo, workers, progress)
        )
    else:
        results = []
    all_done = gather(out) if slab is None else _all_marked(out, info.shape, block)
    seconds = time.perf_counter() - t0
    voxels = sum(r["voxels"] for r in results)
    summary = {
        "blocks": len(grid),
        "blocks_done_before": len(grid) - len(todo),
        "blocks_predicted": len(results),
        "voxels": voxels,
        "seconds": seconds,
        "voxels_per_s": voxels / seconds if seconds > 0 else 0.0,
        "windows": sum(r["windows"] for r in results),
        "forward_passes": sum(r["forward_passes"] for r in results),
        "tta_elements": len(tta_ops(model.mode, model.window, job.tta)),
        "peak_rss_mb": _peak_rss_mb(),
        "estimated_block_mb": est / 2**20,
        "workers": workers,
        "complete": all_done,
    }
    if budget is not None and summary["peak_rss_mb"] > budget:
        log.warning(
            "predict: peak RSS %.0f MiB passed predict.memory_budget_mb %.0f MiB",
            summary["peak_rss_mb"],
            budget,
        )
    return summary


def _all_marked(out: Path, shape, block) -> bool:
    names = {p.name for p in (out / MARKERS).iterdir()}
    return all(block_name(i) in names for i in block_grid(shape, block))


def gather(out: str | Path) -> bool:
    """Mark ``OUT.zarr`` complete if every block has its marker; return whether it is.

    Sets ``dlpipe.complete`` in the root attributes and writes ``OUT.zarr/.dlpipe_complete``
    last. Used at the end of a run and by the gather job after z-slab jobs.
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise UserError("not a prediction output (no manifest)", path=out)
    manifest = json.loads((out / MANIFEST).read_text())
    lay = manifest["layout"]
    if not _all_marked(out, lay["shape"], lay["block"]):
        return False
    root = zarr.open_group(out, mode="r+")
    meta = dict(root.attrs["dlpipe"])
    meta["complete"] = True
    root.attrs["dlpipe"] = meta
    (out / COMPLETE).write_text(json.dumps({"blocks": len(block_grid(lay["shape"], lay["block"]))}))
    return True
