"""``dlpipe tile`` settings: validation and slab plan, array layout, resuming, bookkeeping.

What :mod:`dlpipe.volumes.tile` needs before and around its writing loop: the checked plan
(chunks, shards, slab size from the memory budget), the arrays of one pyramid, the settings
a partial store must match to be resumed, the slabs already done, and non-finite values.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores.atomic import check_output, is_leftover
from dlpipe.stores.chunks import ALL_CHUNKS
from dlpipe.stores.marker import is_complete
from dlpipe.volumes.pyramid import level_shapes
from dlpipe.volumes.readers import Source

__all__ = [
    "BASE_RSS_MB",
    "PROGRESS_DIR",
    "create_arrays",
    "done_slabs",
    "plan_tiling",
    "prepare_store",
    "replace_nonfinite",
    "resume_settings",
]

log = logging.getLogger("dlpipe.volumes.tile")  # its warnings are the tile stage's

PROGRESS_DIR = ".dlpipe_progress"
BASE_RSS_MB = 250
"""Resident memory of the interpreter with NumPy, zarr and the readers loaded (measured)."""


def plan_tiling(src: Source, p: Mapping[str, Any], with_labels: bool) -> dict[str, Any]:
    """Check the settings ``p``; chunks, shards, levels, slab size (z), slab count, level shapes."""
    nz, ny, nx = src.shape
    if p["ngff"] not in ("0.4", "0.5"):
        raise UserError(f"ngff must be '0.4' or '0.5', got {p['ngff']!r}")
    if p["codec"] not in ("zstd", "blosc"):
        raise UserError(f"codec must be 'zstd' or 'blosc', got {p['codec']!r}")
    levels = int(p["levels"])
    if levels < 1:
        raise UserError(f"levels must be >= 1, got {levels}")
    chunks = [min(int(c), s) for c, s in zip(p["chunks"], src.shape, strict=True)]
    if len(p["chunks"]) != 3 or min(int(c) for c in p["chunks"]) < 1:
        raise UserError(f"chunks must be 3 positive sizes (z, y, x), got {p['chunks']}")
    shards = p.get("shards")
    if shards:
        if p["ngff"] == "0.4":
            raise UserError("sharding needs Zarr v3 (ngff 0.5)")
        if len(shards) != 3 or any(
            int(s) % int(c) for s, c in zip(shards, p["chunks"], strict=True)
        ):
            raise UserError(
                f"shards {list(shards)} must be multiples of chunks {list(p['chunks'])}"
            )
        shards = [int(s) for s in shards]
    unit_z = math.lcm(shards[0] if shards else int(p["chunks"][0]), 2 ** (levels - 1))
    # two slabs alive (one written, the next read) plus pyramid temporaries
    per_slice = ny * nx * (4 * src.dtype.itemsize + 2 + (4 if with_labels else 0))
    avail = (float(p["memory_budget_mb"]) - BASE_RSS_MB) * 2**20
    n_units = max(1, int(avail // (unit_z * per_slice)))
    if avail < unit_z * per_slice:
        log.warning(
            "memory budget %s MB is below one slab of %d slices (about %d MB)",
            p["memory_budget_mb"],
            unit_z,
            BASE_RSS_MB + unit_z * per_slice // 2**20,
        )
    slab = min(n_units * unit_z, math.ceil(nz / unit_z) * unit_z)
    return {
        "chunks": chunks,
        "shards": shards,
        "levels": levels,
        "slab": slab,
        "n_slabs": math.ceil(nz / slab),
        "shapes": level_shapes(src.shape, levels),
    }


def _codec(p: Mapping[str, Any], itemsize: int) -> Any:
    level = int(p["clevel"])
    if p["ngff"] == "0.4":
        import numcodecs  # heavy import: only for a Zarr v2 store

        if p["codec"] == "zstd":
            return numcodecs.Zstd(level=level)
        return numcodecs.Blosc(
            cname="zstd",
            clevel=level,
            shuffle=numcodecs.Blosc.SHUFFLE if itemsize > 1 else numcodecs.Blosc.NOSHUFFLE,
        )
    from zarr.codecs import BloscCodec, ZstdCodec  # heavy import: only when writing

    if p["codec"] == "zstd":
        return ZstdCodec(level=level)
    return BloscCodec(
        cname="zstd",
        clevel=level,
        shuffle="shuffle" if itemsize > 1 else "noshuffle",
        typesize=itemsize,
    )


def create_arrays(
    group: Any, shapes: list[tuple[int, ...]], dtype: np.dtype, plan: dict, p: Mapping[str, Any]
) -> None:
    """Create one pyramid's arrays ``0`` .. ``n-1`` of ``shapes`` (z, y, x) in ``group``."""
    v2 = p["ngff"] == "0.4"
    for k, shape in enumerate(shapes):
        chunks = tuple(min(c, s) for c, s in zip(plan["chunks"], shape, strict=True))
        kwargs: dict[str, Any] = {}
        if v2:
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        else:
            kwargs["dimension_names"] = ["z", "y", "x"]
            if plan["shards"]:
                kwargs["shards"] = tuple(
                    math.ceil(min(sh, s) / c) * c
                    for sh, s, c in zip(plan["shards"], shape, chunks, strict=True)
                )
        group.create_array(
            str(k),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            compressors=_codec(p, dtype.itemsize),
            fill_value=0,
            attributes={ALL_CHUNKS: True},
            **kwargs,
        )


def resume_settings(src: Source, lab: Source | None, p: Mapping[str, Any], plan: dict) -> dict:
    """Everything that must match for a partial store to be resumed."""
    keep = {
        k: v for k, v in p.items() if k not in ("replace_nonfinite", "memory_budget_mb", "split")
    }
    return {
        "source": src.fingerprint(),
        "labels": lab.fingerprint() if lab else None,
        "params": keep,
        "slab": plan["slab"],
    }


def prepare_store(out: Path, settings: dict, *, overwrite: bool, resume: bool) -> bool:
    """Decide between a fresh store and resuming; return True to resume."""
    prog = out / PROGRESS_DIR / "settings.json"
    if out.is_file():
        if not overwrite:
            raise UserError("output exists and is a file (use --overwrite to replace it)", path=out)
        out.unlink()
        return False
    if not out.exists() or not any(out.iterdir()):
        return False
    if is_complete(out):
        if not overwrite:
            raise UserError("output exists (use --overwrite to replace it)", path=out)
    elif resume and prog.is_file() and json.loads(prog.read_text()) == settings:
        return True
    elif not overwrite and not is_leftover(out):
        why = "not a store being written by dlpipe tile"
        raise UserError(f"output exists ({why}; use --overwrite to replace it)", path=out)
    else:  # the partial store of a failed run (another input or settings): start again
        check_output(out, overwrite=overwrite)
    shutil.rmtree(out)
    return False


def done_slabs(prog: Path, n_slabs: int) -> int:
    """Number of leading slabs marked done in the progress folder ``prog``."""
    k = 0
    while k < n_slabs and (prog / f"slab_{k:05d}.done").is_file():
        k += 1
    return k


def replace_nonfinite(
    data: np.ndarray, z0: int, replace: float | None, path: Path
) -> tuple[int, int]:
    """Replace NaN/inf in ``data`` by ``replace`` (None: refuse); return (NaN, inf) counts."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return 0, 0
    n_nan = int(np.isnan(data).sum())
    n_inf = int(bad.sum()) - n_nan
    if replace is None:
        first = z0 + int(np.nonzero(bad.any(axis=(1, 2)))[0][0])
        raise UserError(
            f"float data has non-finite values ({n_nan} NaN, {n_inf} infinite in "
            f"this slab; first in slice {first}); use --replace-nonfinite VALUE",
            path=path,
        )
    data[bad] = replace
    return n_nan, n_inf
