"""The memory model of a prediction run: block working sets, the budget, RSS, malloc tuning.

Public API
----------
RUN_OVERHEAD_MB
    Resident memory a run adds once, before its blocks' working sets.
estimate_block_bytes
    Working set of one block task in bytes.
workers_in_budget
    Blocks that may run at once under a memory budget (total peak RSS).
machine_cores, available_mb, block_target_bytes
    The cores this process may use, the memory the system can still give, the working
    set a block may take (from the budget, or a share of the available memory).
auto_block, whole_batch
    The block (and slices per forward pass) of a whole-region run chosen from the machine.
rss_mb, peak_rss_mb
    Resident memory of this process now / at its peak, in MiB (the benchmarks use these).
limit_malloc, malloc_trim
    glibc malloc tuning so that freed block buffers go back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
import sys
from pathlib import Path

import numpy as np

from dlpipe.errors import UserError
from dlpipe.prediction.model import LoadedModel

log = logging.getLogger("dlpipe.prediction")

__all__ = [
    "RUN_OVERHEAD_MB",
    "auto_block",
    "available_mb",
    "block_target_bytes",
    "estimate_block_bytes",
    "limit_malloc",
    "machine_cores",
    "malloc_trim",
    "peak_rss_mb",
    "rss_mb",
    "whole_batch",
    "workers_in_budget",
]

RUN_OVERHEAD_MB = 64.0
"""Resident memory a run adds once, before its blocks' working sets (measured on CPU:
Dask's scheduler threads, zarr's I/O loop and codec buffers, torch's kernels and thread
pool warmed up by the first forward pass)."""


def estimate_block_bytes(
    model: LoadedModel,
    block: tuple[int, ...],
    halo: tuple[int, ...],
    batch: int,
    n_classes: int,
    *,
    itemsize: int = 4,
    chunks: tuple[int, ...] | None = None,
    probabilities: bool = False,
    window: tuple[int, ...] | None = None,
) -> int:
    """Working set of one block task in bytes (what each extra block running at once adds).

    Region (block + halo, at least one window per axis): the raw read and its decoded
    input chunks, the float32 normalised copy, the (C, region) float32 probability sum
    and the weight sum; per block voxel the uint8 labels, the argmax's running maximum
    and the float16 probabilities; the network's activations of one batch (about 12
    float32 maps of ``base_filters`` channels per window voxel for a U-Net, plus the
    softmax outputs). Calibrated against measured peak RSS (benchmarks/predict.py).
    ``window``: the window when not the model's (a whole region: (y, x) or (z, y, x)).
    """
    window = tuple(window) if window is not None else tuple(model.window)
    win = [1, *window] if model.mode != "3d" else list(window)
    side = [max(b + 2 * h, w) for b, h, w in zip(block, halo, win, strict=True)]
    region = int(np.prod(side))
    chunk = list(chunks) if chunks is not None else [1, 1, 1]
    read = int(np.prod([s + c - 1 for s, c in zip(side, chunk[-3:], strict=False)]))
    nblock = int(np.prod(block))
    nwin = int(np.prod(window))
    filters = int(model.card["architecture"].get("base_filters", 32))
    act = batch * nwin * model.context * 4 + batch * nwin * (filters * 12 + n_classes * 3) * 4
    per_block = nblock * (1 + 4 + (2 * n_classes if probabilities else 0))
    return region * (itemsize + 4 * (n_classes + 2)) + 2 * read * itemsize + per_block + act


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - not glibc
        return None


def limit_malloc() -> None:
    """Stop glibc's malloc from keeping freed block buffers (a memory budget is set).

    At most 2 arenas (threads otherwise get their own, each keeping its freed memory),
    and allocations of 4 MiB or more mapped on their own, so that they go back to the
    system when freed (glibc otherwise raises that threshold as large buffers are freed).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD (also stops its dynamic growth)


def malloc_trim() -> None:
    """Give freed heap memory back to the system (glibc ``malloc_trim``)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (VmRSS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; ru_maxrss where absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def workers_in_budget(budget_mb: float, est: int, workers: int) -> int:
    """Blocks that may run at once so that the process's total RSS stays under the budget.

    Raises
    ------
    UserError
        The budget is below what the process already holds plus the run's overhead plus
        one block.
    """
    in_use = rss_mb()
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


TARGET_CAP_MB = 2048.0
"""Largest working set of one block without a budget (MiB): larger blocks gain little
(whole 2048² slices fit) and the 1 Gvoxel workflow keeps every job under 4 GB."""


def machine_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() elsewhere), or
    ``OMP_NUM_THREADS`` where the environment sets it (a batch system's allocation)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def available_mb() -> float:
    """Memory the system can still give (MemAvailable, MiB; 4 GiB where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return 4096.0


def block_target_bytes(budget_mb: float | None, workers: int) -> int:
    """The working set one block may take: the budget less what the process holds and the
    run's overhead, shared by the blocks running at once; without a budget a quarter of
    the available memory, at most :data:`TARGET_CAP_MB`, shared likewise."""
    if budget_mb:
        free = budget_mb - rss_mb() - RUN_OVERHEAD_MB
    else:
        free = min(TARGET_CAP_MB, available_mb() / 4)
    return int(max(free, 16.0) * 2**20 / max(1, workers))


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def whole_batch(model: LoadedModel, plane: tuple[int, int], slices: int, target: int) -> int:
    """Slices of a 2D/2.5D region per forward pass: as many as a quarter of the block's
    working set allows for their activations (at least 1, at most 8, at most ``slices``);
    larger batches are no faster on the CPU for whole slices."""
    filters = int(model.card["architecture"].get("base_filters", 32))
    per_slice = plane[0] * plane[1] * (filters * 12 + len(model.classes) * 3) * 4
    return int(max(1, min(8, slices, (target // 4) // max(1, per_slice))))


def auto_block(
    model: LoadedModel,
    shape: tuple[int, int, int],
    chunks: tuple[int, ...],
    target: int,
    halo_of,
    multiple: int,
    itemsize: int = 1,
    probabilities: bool = False,
) -> tuple[int, int, int]:
    """The largest block whose whole-region working set fits ``target`` bytes.

    2D/2.5D: whole z-slices when one fits (else the larger of y, x halved, in multiples of
    ``multiple``), and as many slices as fit, at most one input chunk deep (a divisor of
    it where one fits, so that blocks read whole chunks) and at most a quarter of the
    slices (at least 4 blocks to overlap I/O with). 3D: the whole volume, its
    largest side halved (multiples of ``multiple``) until the block plus its halo
    (``halo_of(block)``) fits.
    """
    n_classes = len(model.classes)

    def est(block: tuple[int, int, int], batch: int) -> int:
        halo = halo_of(block)
        # the largest region: an inner block (2 halos), a border one of two (1), a whole axis
        side = [
            min(b, s) + h * min(2, -(-s // b) - 1)
            for b, s, h in zip(block, shape, halo, strict=True)
        ]
        side = [side[0], *(_round_up(v, multiple) for v in side[1:])]
        if model.mode == "3d":
            side[0] = _round_up(side[0], multiple)
        window = tuple(side) if model.mode == "3d" else tuple(side[1:])
        one = estimate_block_bytes(
            model,
            block,
            halo,
            batch,
            n_classes,
            itemsize=itemsize,
            chunks=chunks,
            probabilities=probabilities,
            window=window,
        )
        # overlapped I/O: the next region (float32) read and the last block's
        # probabilities written while this one computes
        return one + int(np.prod(side)) * 4 + int(np.prod(block)) * 4 * n_classes

    if model.mode == "3d":
        block = list(shape)
        while est(tuple(block), 1) > target and max(block) > multiple:
            ax = int(np.argmax(block))
            block[ax] = max(multiple, _round_up(block[ax] // 2, multiple))
        return tuple(block)
    ny, nx = shape[1], shape[2]
    while est((1, ny, nx), 1) > target and max(ny, nx) > multiple:
        if ny >= nx:
            ny = max(multiple, _round_up(ny // 2, multiple))
        else:
            nx = max(multiple, _round_up(nx // 2, multiple))
    chunk_z = int(chunks[0]) if len(chunks) == 3 else shape[0]
    deep = max(1, min(shape[0], chunk_z))
    # at least 4 blocks along z where there are slices for them: the reads and writes of
    # one block overlap the network's work on another
    deep = max(1, min(deep, -(-shape[0] // 4)))
    fit = 1
    for z in range(deep, 0, -1):
        batch = whole_batch(model, (ny, nx), z, target)
        if est((z, ny, nx), batch) <= target:
            fit = z
            break
    divisors = [d for d in range(fit, 0, -1) if chunk_z % d == 0]
    z = divisors[0] if divisors and divisors[0] * 2 > fit else fit
    return (z, ny, nx)
