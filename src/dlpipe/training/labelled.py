"""Writing a labelled volume in the tiled layout, and sparse (slice-annotated) labels.

:func:`write_labelled_volume` writes the tiled-volume layout that
:func:`dlpipe.training.stores.open_source` reads (used by the benchmarks and tests, and to
train on a TIFF pair before ``dlpipe tile`` has run). :func:`sparse_labels` keeps only
annotated slices of a label volume, marking every other voxel with the ignore index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.labels import IGNORE_INDEX
from dlpipe.stores.marker import mark_complete
from dlpipe.stores.ngff import image_attrs, label_image_attrs, labels_group_attrs

__all__ = ["sparse_labels", "sparse_labels_from_demo", "statistics", "write_labelled_volume"]


def statistics(volume: np.ndarray, bins: int = 256) -> dict[str, Any]:
    """The ``dlpipe.statistics`` attribute of a volume (min, max, mean, std, p0_1, p99_9,
    histogram)."""
    v = np.asarray(volume, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1))
    p0, p1 = np.percentile(v, [0.1, 99.9])
    return {
        "min": lo,
        "max": hi,
        "mean": float(v.mean()),
        "std": float(v.std()),
        "p0_1": float(p0),
        "p99_9": float(p1),
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def write_labelled_volume(
    path: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    split: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    chunks: Sequence[int] = (16, 64, 64),
    name: str = "phases",
    source: str = "",
) -> Path:
    """Write ``image`` and ``labels`` as a tiled volume store (single pyramid level).

    Parameters
    ----------
    image : (Z, Y, X) array, any numeric dtype
    labels : (Z, Y, X) uint8, 255 = unlabelled
    split : ``{"train": [z0, z1], "val": [...], "test": [...], "gap": g}``; default 70/10/20
        with no gap
    classes : class names stored in ``dlpipe.classes``

    The NGFF attributes come from :mod:`dlpipe.stores.ngff` (class names as label
    ``properties``); the completion marker is written last.
    """
    path = Path(path)
    if image.shape != labels.shape or image.ndim != 3:
        raise UserError(f"image {image.shape} and labels {labels.shape} must be equal (z, y, x)")
    nz = image.shape[0]
    if split is None:
        a, b = round(0.7 * nz), round(0.8 * nz)
        split = {"train": [0, a], "val": [a, b], "test": [b, nz], "gap": 0}
    ch = tuple(min(c, s) for c, s in zip(chunks, image.shape, strict=True))
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = group.create_array("0", shape=image.shape, chunks=ch, dtype=image.dtype)
    arr[...] = image
    lab = group.create_array(f"labels/{name}/0", shape=labels.shape, chunks=ch, dtype="uint8")
    lab[...] = labels.astype(np.uint8)
    group.attrs.update(image_attrs(path.stem, 1, [1.0, 1.0, 1.0], None, "0.5"))
    group["labels"].attrs.update(labels_group_attrs([name], "0.5"))
    group[f"labels/{name}"].attrs.update(
        label_image_attrs(name, 1, [1.0, 1.0, 1.0], None, "0.5", classes=classes)
    )
    meta: dict[str, Any] = {
        "statistics": statistics(image),
        "split": split,
        "source": source,
        "complete": True,
    }
    if classes:
        meta["classes"] = list(classes)
    group.attrs["dlpipe"] = meta
    mark_complete(path, json.dumps({"complete": True}) + "\n")
    return path


def sparse_labels(
    labels: np.ndarray, slices: Sequence[int], ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Keep the labels of the given z-slices only; every other voxel becomes ``ignore_index``.

    Parameters
    ----------
    labels : (Z, Y, X) uint8 exact labels
    slices : annotated z indices (e.g. ``metadata.json`` ``annotated_slices``)

    Returns
    -------
    (Z, Y, X) uint8
    """
    out = np.full(labels.shape, ignore_index, dtype=np.uint8)
    for z in slices:
        if not 0 <= int(z) < labels.shape[0]:
            raise UserError(f"annotated slice {z} is outside the volume (0..{labels.shape[0] - 1})")
        out[int(z)] = labels[int(z)]
    return out


def sparse_labels_from_demo(demo_dir: str | Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The demo volume, its labels restricted to the CVAT-annotated slices, and those slices.

    Reads ``volume.tif``, ``labels.tif`` and ``metadata.json`` of ``dlpipe synth`` output.
    """
    import tifffile  # optional reader, only for the demo TIFFs

    demo_dir = Path(demo_dir)
    meta = json.loads((demo_dir / "metadata.json").read_text())
    slices = [int(z) for z in meta["annotated_slices"]]
    volume = tifffile.imread(demo_dir / "volume.tif")
    labels = tifffile.imread(demo_dir / "labels.tif")
    return volume, sparse_labels(labels, slices), slices
