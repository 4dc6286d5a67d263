"""``dlpipe tile``: a volume (and its labels) into a chunked, resumable OME-Zarr pyramid."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.results import StageResult
from dlpipe.stores.atomic import (
    check_output,
    is_leftover,
    json_safe,
    output_errors,
    write_json_atomic,
    write_text_atomic,
)
from dlpipe.stores.chunks import ALL_CHUNKS, ALL_CHUNKS_CONFIG
from dlpipe.stores.marker import is_complete, mark_complete
from dlpipe.stores.ngff import image_attrs, label_image_attrs, labels_group_attrs
from dlpipe.volumes.pyramid import downsample_mean, downsample_mode, level_shapes
from dlpipe.volumes.readers import LABEL_DTYPES, Source, open_source
from dlpipe.volumes.split import z_split
from dlpipe.volumes.statistics import StreamingStats

log = logging.getLogger(__name__)

PROGRESS_DIR = ".dlpipe_progress"
BASE_RSS_MB = 250
"""Resident memory of the interpreter with NumPy, zarr and the readers loaded (measured)."""

DEFAULTS: dict[str, Any] = defaults()["tile"]
"""The ``tile`` section's defaults, from the config schema (the one source of defaults)."""


def tile_volume(
    input_path: str | Path,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    raw: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = True,
) -> StageResult:
    """Write ``input_path`` (and ``labels``) as an OME-Zarr pyramid at ``out``, slab by slab.

    Parameters
    ----------
    input_path : path
        Any input :func:`dlpipe.volumes.open_source` reads (z, y, x; uint8, uint16, int16,
        float32).
    out : path
        ``OUT.zarr``.
    labels : path or None
        Label volume of the same shape (integer values 0-255), stored as uint8 under
        ``labels/<labels_name>``.
    params : mapping
        The ``tile`` config section (keys of :data:`DEFAULTS`).
    raw : mapping
        ``shape``, ``dtype``, ``byte_order``, ``offset`` of a raw input.
    overwrite : bool
        Replace an existing store (a matching partial store is still resumed when
        ``resume``).
    resume : bool
        Continue a partial store made with the same input and settings.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``shape``, ``dtype``, ``statistics``, ``split``, ``levels``, ``slab_slices``,
        ``slabs``, ``resumed_slabs``, ``seconds``, ``mb_per_s``.
    """
    p = dict(DEFAULTS) | dict(params or {})
    raw = dict(raw or {})
    out = Path(out)
    t_start = time.perf_counter()
    src = open_source(
        input_path,
        raw_shape=raw.get("shape"),
        raw_dtype=raw.get("dtype"),
        byte_order=raw.get("byte_order"),
        raw_offset=int(raw.get("offset") or 0),
    )
    lab: Source | None = None
    try:
        if labels is not None:
            lab = open_source(labels, dtypes=LABEL_DTYPES)
            if lab.shape != src.shape:
                raise UserError(
                    f"labels shape {lab.shape} differs from the shape {src.shape} of the "
                    f"image {input_path}",
                    path=lab.path,
                )
        with output_errors(out):  # a full or read-only disk: one line naming OUT
            summary = _tile(
                src,
                lab,
                out,
                p,
                overwrite=overwrite,
                resume=resume,
                progress=progress,
                t_start=t_start,
            )
    finally:
        src.close()
        if lab is not None:
            lab.close()
    return _result(summary, out)


def _result(summary: dict[str, Any], out: str | Path) -> StageResult:
    """The summary with what tracking logs: shape tag, statistics, throughput, the split."""
    st = summary["statistics"]
    z, y, x = summary["shape"]
    return StageResult(
        summary,
        tags={"shape": f"{z}x{y}x{x}", "dtype": summary["dtype"]},
        metrics={k: st[k] for k in ("min", "max", "mean", "std", "p0_1", "p99_9")}
        | {
            "voxels": z * y * x,
            "seconds": summary["seconds"],
            "mb_per_s": summary["mb_per_s"],
            "resumed_slabs": summary["resumed_slabs"],
        },
        dicts={"tile_summary.json": {"split": summary["split"], "statistics": st}},
        summary=f"tiled {z}x{y}x{x} {summary['dtype']} voxels into {len(summary['levels'])} "
        f"levels ({summary['mb_per_s']:.1f} MB/s"
        + (f", {summary['resumed_slabs']} slabs resumed" if summary["resumed_slabs"] else "")
        + f"): {out}",
    )


def _plan(src: Source, p: Mapping[str, Any], with_labels: bool) -> dict[str, Any]:
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
        import numcodecs

        if p["codec"] == "zstd":
            return numcodecs.Zstd(level=level)
        return numcodecs.Blosc(
            cname="zstd",
            clevel=level,
            shuffle=numcodecs.Blosc.SHUFFLE if itemsize > 1 else numcodecs.Blosc.NOSHUFFLE,
        )
    from zarr.codecs import BloscCodec, ZstdCodec

    if p["codec"] == "zstd":
        return ZstdCodec(level=level)
    return BloscCodec(
        cname="zstd",
        clevel=level,
        shuffle="shuffle" if itemsize > 1 else "noshuffle",
        typesize=itemsize,
    )


def _create_arrays(
    group: Any, shapes: list[tuple[int, ...]], dtype: np.dtype, plan: dict, p: Mapping[str, Any]
) -> None:
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


def _settings(src: Source, lab: Source | None, p: Mapping[str, Any], plan: dict) -> dict:
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


def _prepare_store(out: Path, settings: dict, *, overwrite: bool, resume: bool) -> bool:
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


def _done_slabs(prog: Path, n_slabs: int) -> int:
    k = 0
    while k < n_slabs and (prog / f"slab_{k:05d}.done").is_file():
        k += 1
    return k


def _tile(
    src: Source,
    lab: Source | None,
    out: Path,
    p: dict,
    *,
    overwrite: bool,
    resume: bool,
    progress: bool,
    t_start: float,
) -> dict[str, Any]:
    import zarr
    from tqdm.auto import tqdm

    plan = _plan(src, p, lab is not None)
    split = z_split(
        src.shape[0],
        **{k: v for k, v in (p["split"] or {}).items() if k in ("fractions", "gap", "ranges")},
    )
    settings = _settings(src, lab, p, plan)
    resuming = _prepare_store(out, settings, overwrite=overwrite, resume=resume)
    prog = out / PROGRESS_DIR
    zfmt = 2 if p["ngff"] == "0.4" else 3
    name = p["labels_name"]
    if not resuming:
        out.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(out, mode="w", zarr_format=zfmt)
        root.attrs.update(
            image_attrs(out.stem, plan["levels"], p["voxel_size"], p["unit"], p["ngff"])
            | {"dlpipe": {"complete": False}}
        )
        _create_arrays(root, plan["shapes"], src.dtype, plan, p)
        if lab is not None:
            lgroup = root.create_group("labels")
            lgroup.attrs.update(labels_group_attrs([name], p["ngff"]))
            _create_arrays(lgroup.create_group(name), plan["shapes"], np.dtype(np.uint8), plan, p)
        prog.mkdir()
        write_text_atomic(prog / "settings.json", json.dumps(json_safe(settings)), overwrite=True)
    root = zarr.open_group(out, mode="r+", zarr_format=zfmt)
    # every chunk is stored, empty ones too: a chunk missing later was lost (stores.chunks)
    image = [root[str(k)].with_config(ALL_CHUNKS_CONFIG) for k in range(plan["levels"])]
    labarr = (
        [root[f"labels/{name}/{k}"].with_config(ALL_CHUNKS_CONFIG) for k in range(plan["levels"])]
        if lab
        else []
    )

    n_slabs, slab = plan["n_slabs"], plan["slab"]
    start = _done_slabs(prog, n_slabs)
    stats = StreamingStats(src.dtype)
    label_counts = np.zeros(256, dtype=np.int64)
    nonfinite = np.zeros(2, dtype=np.int64)  # NaN, infinite
    if start:
        stats, extra = StreamingStats.load(prog / f"stats_{start - 1:05d}.npz", src.dtype)
        label_counts, nonfinite = extra["label_counts"], extra["nonfinite"]
        log.info("resuming %s: %d of %d slabs already written", out, start, n_slabs)
    nz = src.shape[0]
    t0 = time.perf_counter()

    def load(i: int) -> tuple[int, np.ndarray, np.ndarray | None, tuple[int, int]]:
        """Read and check slab i: z0, image, labels as uint8, (NaN, inf) replaced."""
        z0, z1 = i * slab, min((i + 1) * slab, nz)
        data = src.read(z0, z1)
        bad = (0, 0)
        if data.dtype.kind == "f":
            bad = _nonfinite(data, z0, p["replace_nonfinite"], src.path)
        ldata = None
        if lab is not None:
            ldata = lab.read(z0, z1)
            lo, hi = ldata.min(), ldata.max()
            if lo < 0 or hi > 255:
                raise UserError(
                    f"label values must be 0-255, found {lo}..{hi} in slices {z0}-{z1 - 1}",
                    path=lab.path,
                )
            ldata = ldata.astype(np.uint8, copy=False)
        return z0, data, ldata, bad

    def measure(data: np.ndarray, ldata: np.ndarray | None) -> None:
        stats.update(data)
        if ldata is not None:
            label_counts[:] += np.bincount(ldata.reshape(-1), minlength=256)

    # One helper thread overlaps the statistics of slab i and the reading of slab i+1 with
    # the compression and writing of slab i (zstd and NumPy copies release the GIL).
    try:
        bar = tqdm(
            total=nz,
            initial=min(start * slab, nz),
            unit="slice",
            desc="tile",
            disable=None if progress else True,
        )
        with ThreadPoolExecutor(1, thread_name_prefix="dlpipe-tile") as pool:
            nxt = pool.submit(load, start) if start < n_slabs else None
            for i in range(start, n_slabs):
                z0, data, ldata, bad = nxt.result()
                measured = pool.submit(measure, data, ldata)
                nxt = pool.submit(load, i + 1) if i + 1 < n_slabs else None
                _write_pyramid(image, data, z0, downsample_mean)
                if ldata is not None:
                    _write_pyramid(labarr, ldata, z0, downsample_mode)
                measured.result()
                nonfinite += bad
                n_z = data.shape[0]
                del data, ldata
                tmp = prog / f".stats_{i:05d}.npz.tmp"
                stats.save(tmp, label_counts=label_counts, nonfinite=nonfinite)
                os.replace(tmp, prog / f"stats_{i:05d}.npz")
                (prog / f"slab_{i:05d}.done").touch()
                if i:
                    (prog / f"stats_{i - 1:05d}.npz").unlink(missing_ok=True)
                bar.update(n_z)
        bar.close()
    except UserError:
        if not resuming and start == 0:
            shutil.rmtree(out, ignore_errors=True)  # nothing worth keeping
        raise
    seconds = time.perf_counter() - t0

    statistics = stats.result()
    values = [int(v) for v in np.nonzero(label_counts)[0]]
    attrs: dict[str, Any] = {
        "statistics": statistics,
        "split": split,
        "source": {
            "path": str(Path(src.path).resolve()),
            "kind": src.kind,
            "shape": list(src.shape),
            "dtype": src.dtype.name,
        },
        "voxel_size": [float(v) for v in p["voxel_size"]],
        "unit": p["unit"],
        "levels": [list(s) for s in plan["shapes"]],
        "nonfinite_replaced": {
            "nan": int(nonfinite[0]),
            "inf": int(nonfinite[1]),
            "value": p["replace_nonfinite"],
        },
        "complete": True,
    }
    if lab is not None:
        attrs["labels"] = {
            "name": name,
            "path": str(Path(lab.path).resolve()),
            "counts": {str(v): int(label_counts[v]) for v in values},
        }
        lgroup = root[f"labels/{name}"]
        lgroup.attrs.update(
            label_image_attrs(name, plan["levels"], p["voxel_size"], p["unit"], p["ngff"], values)
        )
    root.attrs.update(json_safe({"dlpipe": attrs}))  # strict JSON: no bare NaN
    write_json_atomic(out / "split.json", split, overwrite=True)
    shutil.rmtree(prog)
    mark_complete(
        out,
        json.dumps({"complete": True, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        + "\n",
    )
    written = nz - min(start * slab, nz)
    nbytes = written * src.shape[1] * src.shape[2] * src.dtype.itemsize
    return {
        "shape": list(src.shape),
        "dtype": src.dtype.name,
        "statistics": statistics,
        "split": split,
        "levels": [list(s) for s in plan["shapes"]],
        "slab_slices": slab,
        "slabs": n_slabs,
        "resumed_slabs": start,
        "seconds": time.perf_counter() - t_start,
        "write_seconds": seconds,
        "mb_per_s": nbytes / 2**20 / seconds if seconds > 0 else 0.0,
    }


def _nonfinite(data: np.ndarray, z0: int, replace: float | None, path: Path) -> tuple[int, int]:
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


def _write_pyramid(arrays: list[Any], data: np.ndarray, z0: int, down: Any) -> None:
    """Write ``data`` (slices from ``z0``) into level 0 and its downsampled levels."""
    for k, arr in enumerate(arrays):
        if k:
            data = down(data)
        zk = z0 >> k
        arr[zk : zk + data.shape[0]] = data
