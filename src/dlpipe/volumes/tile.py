"""``dlpipe tile``: a volume (and its labels) into a chunked, resumable OME-Zarr pyramid."""

from __future__ import annotations

import json
import logging
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
from dlpipe.stores.atomic import json_safe, output_errors, write_json_atomic, write_text_atomic
from dlpipe.stores.chunks import ALL_CHUNKS_CONFIG
from dlpipe.stores.instance_labels import write_instance_labels
from dlpipe.stores.marker import mark_complete
from dlpipe.stores.ngff import image_attrs, label_image_attrs, labels_group_attrs
from dlpipe.volumes.pyramid import downsample_mean, downsample_mode
from dlpipe.volumes.readers import LABEL_DTYPES, Source, open_source
from dlpipe.volumes.split import z_split
from dlpipe.volumes.statistics import StreamingStats
from dlpipe.volumes.tile_setup import (
    PROGRESS_DIR,
    create_arrays,
    done_slabs,
    plan_tiling,
    prepare_store,
    replace_nonfinite,
    resume_settings,
)

__all__ = ["DEFAULTS", "tile_volume"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = defaults()["tile"]
"""The ``tile`` section's defaults, from the config schema (the one source of defaults)."""


def tile_volume(
    input_path: str | Path,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    instances: str | Path | None = None,
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
    instances : path or None
        Instance label volume of the same shape (integer object ids, 0 background), stored
        as uint32 under ``labels/<stem>`` when the file's stem ends in ``instances`` (the
        synth's ``pore_instances.tif``), else ``labels/instances``
        (:func:`dlpipe.stores.instance_labels.write_instance_labels`).
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
    inst: Source | None = None
    try:
        if instances is not None:
            inst = open_source(instances, dtypes=LABEL_DTYPES)
            if inst.shape != src.shape:
                raise UserError(
                    f"instances shape {inst.shape} differs from the shape {src.shape} of the "
                    f"image {input_path}",
                    path=inst.path,
                )
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
                inst=inst,
            )
    finally:
        src.close()
        for extra in (lab, inst):
            if extra is not None:
                extra.close()
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
    inst: Source | None = None,
) -> dict[str, Any]:
    import zarr  # heavy imports: only when tiling
    from tqdm.auto import tqdm

    plan = plan_tiling(src, p, lab is not None)
    split = z_split(
        src.shape[0],
        **{k: v for k, v in (p["split"] or {}).items() if k in ("fractions", "gap", "ranges")},
    )
    settings = resume_settings(src, lab, p, plan)
    resuming = prepare_store(out, settings, overwrite=overwrite, resume=resume)
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
        create_arrays(root, plan["shapes"], src.dtype, plan, p)
        if lab is not None:
            lgroup = root.create_group("labels")
            lgroup.attrs.update(labels_group_attrs([name], p["ngff"]))
            create_arrays(lgroup.create_group(name), plan["shapes"], np.dtype(np.uint8), plan, p)
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
    start = done_slabs(prog, n_slabs)
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
            bad = replace_nonfinite(data, z0, p["replace_nonfinite"], src.path)
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
            label_image_attrs(
                name,
                plan["levels"],
                p["voxel_size"],
                p["unit"],
                p["ngff"],
                values,
                title="reference",  # napari layer "phases: reference", hidden
            )
        )
    if inst is not None:
        stem = Path(inst.path).stem
        attrs["instances"] = write_instance_labels(
            out,
            stem if stem.endswith("instances") else "instances",
            inst.read,
            src.shape,
            plan["chunks"],
            voxel_size=p["voxel_size"],
            unit=p["unit"],
            version=p["ngff"],
            where=inst.path,
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


def _write_pyramid(arrays: list[Any], data: np.ndarray, z0: int, down: Any) -> None:
    """Write ``data`` (slices from ``z0``) into level 0 and its downsampled levels."""
    for k, arr in enumerate(arrays):
        if k:
            data = down(data)
        zk = z0 >> k
        arr[zk : zk + data.shape[0]] = data
