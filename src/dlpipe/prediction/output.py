"""The output of a U-Net run: ``PRED.zarr``'s layout, its resume manifest, block markers, gather.

Public API
----------
MANIFEST, MARKERS
    Names of the resume manifest and of the folder of per-block markers inside ``PRED.zarr``.
block_name, mark_block
    A block's marker name; write it once the block is stored.
build_manifest
    What a resumed run must share with the run that started the output.
prepare_output
    Create ``PRED.zarr`` (or check it for a resume); the names of the blocks done before.
all_marked, gather
    Whether every block is done; mark the output complete.
UNCERTAINTY, slice_uncertainty, write_block_uncertainty, gather_uncertainty
    Per-slice mean uncertainty (1 - margin of the blended probabilities): a block's sums
    along each axis, written beside its marker, gathered into ``dlpipe.uncertainty``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.prediction.model import LoadedModel
from dlpipe.prediction.volume import VolumeInfo
from dlpipe.prediction.windows import block_grid
from dlpipe.stores import ngff
from dlpipe.stores.atomic import check_output, is_leftover, json_safe, write_text_atomic
from dlpipe.stores.marker import mark_complete
from dlpipe.stores.pyramid import source_levels, write_label_pyramid

if TYPE_CHECKING:  # only for annotations: block.py imports this module
    from dlpipe.prediction.block import Job

log = logging.getLogger("dlpipe.prediction")

__all__ = [
    "MANIFEST",
    "MARKERS",
    "UNCERTAINTY",
    "all_marked",
    "block_name",
    "build_manifest",
    "gather",
    "gather_uncertainty",
    "mark_block",
    "prepare_output",
    "slice_uncertainty",
    "write_block_uncertainty",
]

MANIFEST = ".dlpipe_manifest.json"
MARKERS = ".dlpipe_blocks"
UNCERTAINTY = ".dlpipe_uncertainty"
"""Folder of the per-block uncertainty sums (``<z_y_x>.npz``), beside the markers."""
MEASURE = "1 - margin"
"""The uncertainty of a voxel: 1 minus (largest minus second largest class probability)."""


def slice_uncertainty(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice sums of the voxel uncertainty (:data:`MEASURE`) of a block.

    Parameters
    ----------
    p : (C, z, y, x) float class probabilities of the block (its own voxels, halo cropped)

    Returns
    -------
    Sums over each z-slice (z,), y-slice (y,) and x-slice (x,) of the block, float64.
    """
    top = p[0].astype(np.float32, copy=True)
    second = np.zeros_like(top)
    for c in range(1, p.shape[0]):
        np.maximum(second, np.minimum(top, p[c]), out=second)
        np.maximum(top, p[c], out=top)
    u = 1.0 - (top - second)
    return (
        u.sum(axis=(1, 2), dtype=np.float64),
        u.sum(axis=(0, 2), dtype=np.float64),
        u.sum(axis=(0, 1), dtype=np.float64),
    )


def write_block_uncertainty(
    out: str | Path,
    index: tuple[int, ...],
    bounds: tuple[tuple[int, int], ...],
    sums: tuple[np.ndarray, ...],
) -> None:
    """Write a block's per-slice sums ``OUT/.dlpipe_uncertainty/<z_y_x>.npz`` (before its
    marker, so a marked block always has them)."""
    folder = Path(out) / UNCERTAINTY
    folder.mkdir(exist_ok=True)
    with (folder / f"{block_name(index)}.npz").open("wb") as f:
        np.savez(f, bounds=np.asarray(bounds, dtype=np.int64), z=sums[0], y=sums[1], x=sums[2])


def gather_uncertainty(out: Path, shape: Any, block: Any) -> dict[str, Any] | None:
    """Mean uncertainty per slice along each axis from the blocks' sums (None if a block
    has none, e.g. an output started by an older dlpipe).

    Returns
    -------
    ``{"measure": MEASURE, "z": [...], "y": [...], "x": [...]}``: the mean over each slice.
    """
    shape = [int(s) for s in shape]
    sums = [np.zeros(n, dtype=np.float64) for n in shape]
    for index in block_grid(shape, block):
        f = out / UNCERTAINTY / f"{block_name(index)}.npz"
        if not f.is_file():
            return None
        with np.load(f) as data:
            b = data["bounds"]
            for ax, key in enumerate("zyx"):
                sums[ax][b[ax][0] : b[ax][1]] += data[key]
    area = [shape[1] * shape[2], shape[0] * shape[2], shape[0] * shape[1]]
    means = {a: (s / n).round(6).tolist() for a, s, n in zip("zyx", sums, area, strict=True)}
    return {"measure": MEASURE, **means}


def block_name(index: tuple[int, ...]) -> str:
    """Marker file name of output block ``index``."""
    return "_".join(str(i) for i in index)


def mark_block(out: str | Path, index: tuple[int, ...]) -> None:
    """Write the marker ``OUT/.dlpipe_blocks/<z_y_x>`` of a stored block."""
    (Path(out) / MARKERS / block_name(index)).write_text("")


def _probabilities_attrs(classes: list[str], voxel_size: list[float], unit: str | None) -> dict:
    """NGFF attributes of ``probabilities``: a channel axis before the spatial ones."""
    ms = ngff.multiscales("probabilities", 1, voxel_size, unit, "0.5", method="mean")
    ms[0]["axes"].insert(0, {"name": "c", "type": "channel"})
    scale = ms[0]["datasets"][0]["coordinateTransformations"][0]
    scale["scale"] = [1.0, *scale["scale"]]
    return {"ome": {"version": "0.5", "multiscales": ms}, "dlpipe": {"classes": classes}}


def build_manifest(model: LoadedModel, info: VolumeInfo, job: Job) -> dict[str, Any]:
    """The manifest: model hash, block layout and input volume of a run."""
    return {
        "model_hash": model.digest,
        "model_dir": str(Path(job.model_dir).resolve()),  # lineage: evaluate finds the card
        "layout": {
            "shape": list(info.shape),
            "block": list(job.block),
            "halo": list(job.halo),
            "window": "block + halo" if job.whole else list(model.window),
            "overlap": job.overlap,
            "tta": job.tta,
            "probabilities": job.probabilities,
            "labels": job.labels,
            "mode": model.mode,
        },
        "volume": {
            "path": str(Path(info.path).resolve()),
            "level": info.level,
            "shape": list(info.shape),
            "dtype": info.dtype,
            "normalisation": [info.p0_1, info.p99_9],
        },
    }


def prepare_output(
    out: Path,
    model: LoadedModel,
    info: VolumeInfo,
    job: Job,
    manifest: dict,
    *,
    overwrite: bool,
    resume: bool,
) -> set[str]:
    """Create ``out`` (or check it for a resume); return the names of blocks already done.

    The incomplete output of a killed or failed run (:func:`~dlpipe.stores.atomic.is_leftover`)
    is resumed when it was started with the same model, layout and volume, even without
    ``resume`` (nothing is lost), and replaced otherwise; ``overwrite`` starts again.
    """
    if out.exists():
        leftover = is_leftover(out)
        if (resume or (leftover and not overwrite)) and (out / MANIFEST).is_file():
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
                if not resume:
                    log.info("predict: %s: resuming the run that was interrupted", out)
                markers = out / MARKERS
                return {m.name for m in markers.iterdir()} if markers.is_dir() else set()
            if not overwrite and not leftover:
                raise UserError(
                    f"refusing to resume: the output was started with {clash} "
                    "(use --overwrite to start again)",
                    path=out,
                )
            log.info("predict: %s: started with %s; starting again", out, clash)
        if not overwrite and not leftover:
            hint = " or --resume to finish an interrupted run" if (out / MANIFEST).is_file() else ""
            raise UserError(f"output exists (use --overwrite to replace it{hint})", path=out)
        check_output(out, overwrite=overwrite)  # replaced: --overwrite, or a failed run's
        shutil.rmtree(out)
    ndim = 2 if info.squeeze_z else 3
    shape = info.shape[1:] if info.squeeze_z else info.shape
    chunks = tuple(min(b, s) for b, s in zip(job.block[-ndim:], shape, strict=True))
    root = zarr.open_group(out, mode="w")
    root.attrs.update(
        {"dlpipe": {"prediction": manifest, "classes": model.classes, "complete": False}}
    )
    labels = root.create_group("labels")
    labels.attrs.update(ngff.labels_group_attrs([job.labels], "0.5"))
    lab = labels.create_group(job.labels)
    voxel_size = info.scale[-ndim:]
    lab.attrs.update(
        ngff.label_image_attrs(job.labels, 1, voxel_size, info.unit, "0.5", classes=model.classes)
    )
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
        prob.attrs.update(_probabilities_attrs(model.classes, voxel_size, info.unit))
        prob.create_array(
            "0",
            shape=(n, *shape),
            chunks=(n, *chunks),
            dtype="float16",
            fill_value=0,
            dimension_names=["c", *["z", "y", "x"][-ndim:]],
        )
    (out / MARKERS).mkdir()
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n", overwrite=True)
    return set()


def all_marked(out: Path, shape: Any, block: Any) -> bool:
    """Whether every block of the grid of ``shape`` by ``block`` has its marker in ``out``."""
    names = {p.name for p in (out / MARKERS).iterdir()}
    return all(block_name(i) in names for i in block_grid(shape, block))


def gather(out: str | Path) -> bool:
    """Mark ``OUT.zarr`` complete if every block has its marker; return whether it is.

    Sets ``dlpipe.complete`` and ``dlpipe.uncertainty`` (the mean uncertainty of each
    slice along each axis, :func:`gather_uncertainty`) in the root attributes and writes
    the completion marker
    (:func:`dlpipe.stores.marker.mark_complete`) last. Used at the end of a run and by the
    gather job after z-slab jobs.
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise UserError("not a prediction output (no manifest)", path=out)
    manifest = json.loads((out / MANIFEST).read_text())
    lay = manifest["layout"]
    if not all_marked(out, lay["shape"], lay["block"]):
        return False
    root = zarr.open_group(out, mode="r+")
    meta = dict(root.attrs["dlpipe"])
    meta["complete"] = True
    uncertainty = gather_uncertainty(out, lay["shape"], lay["block"])
    if uncertainty is not None:
        meta["uncertainty"] = uncertainty
    root.attrs["dlpipe"] = json_safe(meta)  # strict JSON: no bare NaN
    write_label_pyramid(out, lay["labels"], source_levels(manifest["volume"]["path"]))
    mark_complete(out, json.dumps({"blocks": len(block_grid(lay["shape"], lay["block"]))}))
    return True
