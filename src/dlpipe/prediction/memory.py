"""The memory model of a prediction run: block working sets, the budget, RSS, malloc tuning.

Public API
----------
RUN_OVERHEAD_MB
    Resident memory a run adds once, before its blocks' working sets.
estimate_block_bytes
    Working set of one block task in bytes.
workers_in_budget
    Blocks that may run at once under a memory budget (total peak RSS).
rss_mb, peak_rss_mb
    Resident memory of this process now / at its peak, in MiB (the benchmarks use these).
limit_malloc, malloc_trim
    glibc malloc tuning so that freed block buffers go back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
import sys
from pathlib import Path

import numpy as np

from dlpipe.errors import UserError
from dlpipe.prediction.model import LoadedModel

log = logging.getLogger("dlpipe.prediction")

__all__ = [
    "RUN_OVERHEAD_MB",
    "estimate_block_bytes",
    "limit_malloc",
    "malloc_trim",
    "peak_rss_mb",
    "rss_mb",
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
