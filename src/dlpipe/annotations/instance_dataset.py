"""Write an instance dataset Zarr in the layout of ``dlpipe cvat`` (from any reader)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.dataset import PADDING, PIXEL_CONVENTION, create_dataset_array, finish_dataset
from dlpipe.stores.table import ObjectsTable

#: One image of a dataset: name, image (h, w[, c]), semantic (h, w), instances (h, w).
Item = tuple[str, np.ndarray, np.ndarray, np.ndarray]


class Layout(NamedTuple):
    """The arrays of a dataset Zarr, known before the first image is written."""

    classes: Sequence[str]  # with classes[0] == "background"
    sizes: Sequence[tuple[int, int]]  # (h, w) of each image
    channels: int  # 1 or 3
    dtype: Any  # of the images: uint8 or uint16


def renumber(inst: np.ndarray) -> tuple[np.ndarray, int]:
    """Instance ids made consecutive (1..K) in increasing order; K."""
    ids, inverse = np.unique(inst, return_inverse=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        inverse = inverse + 1
    return inverse.reshape(inst.shape).astype(np.uint32), len(ids) - 1


def write_import(
    out: str | Path,
    frames: Iterable[Item],
    layout: Layout,
    stats: dict[str, int],
    *,
    source: str,
    kind: str,
    overwrite: bool,
) -> dict[str, Any]:
    """The end of an importer (COCO, instance folders): its frames written by
    :func:`write_instance_dataset`, grey images repeated to RGB in a colour dataset and
    cast to ``layout.dtype``; the summary with the importer's ``stats`` (counted while
    its frames were read).
    """

    def cast() -> Iterator[Item]:
        for name, img, sem, inst in frames:
            if layout.channels == 3 and img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            yield name, img.astype(layout.dtype, copy=False), sem, inst

    summary = write_instance_dataset(
        out,
        cast(),
        classes=layout.classes,
        sizes=layout.sizes,
        channels=layout.channels,
        source=source,
        kind=kind,
        overwrite=overwrite,
        dtype=layout.dtype,
    )
    return summary | stats


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def write_instance_dataset(
    out: str | Path,
    frames: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    *,
    classes: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    channels: int,
    source: str = "",
    kind: str = "mask",
    overwrite: bool = False,
    chunk: int = 1024,
    dtype: Any = np.uint8,
    table_format: str = "parquet",
) -> dict[str, Any]:
    """Write images with semantic and instance maps as a dataset Zarr, atomically.

    The layout is that of :func:`dlpipe.annotations.cvat.convert`: ``images`` (N, H, W) grey or
    (N, H, W, 3) RGB of ``dtype`` (uint8 or uint16), ``semantic`` (N, H, W) uint8
    (0 background), ``instances`` (N, H, W) uint32 (0 background, 1..K per image),
    attributes ``classes`` (with ``classes[0] == "background"``), ``image_names``,
    ``image_sizes`` ([[h, w], ...]: images of different sizes are padded with zeros at the
    bottom and right to the largest H and W), ``source``; the objects table
    ``objects.parquet`` (or ``objects.csv``, ``table_format``; one row per object, the
    columns of ``dlpipe cvat``'s) and the marker completion marker last.

    Parameters
    ----------
    frames : (name, image (h, w[, c]), semantic (h, w), instances (h, w)) per image, in the
        order of ``sizes``
    classes : class names with ``classes[0] == "background"``
    sizes : (h, w) of each image (known up front so the arrays are allocated once)
    channels : 1 or 3
    kind : the ``kind`` column of the objects table (``polygon``, ``mask``, ...)

    Returns
    -------
    dict with ``images``, ``objects``, ``classes``, ``size`` ([H, W]) and ``padded`` (count).
    """
    if not classes or classes[0] != "background":
        raise UserError(f"classes must start with 'background', got {list(classes)}")
    if not sizes:
        raise UserError("no images to write")
    n = len(sizes)
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    extra = (channels,) if channels == 3 else ()
    names: list[str] = []
    objects = 0
    with atomic_path(out, overwrite=overwrite) as tmp:
        tmp.mkdir()
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        images = create_dataset_array(group, "images", (n, h, w, *extra), dtype, chunk=chunk)
        sem, inst = (
            create_dataset_array(group, name, (n, h, w), dt, chunk=chunk)
            for name, dt in (("semantic", np.uint8), ("instances", np.uint32))
        )
        table = ObjectsTable(tmp, table_format)
        for i, (name, img, s, lab) in enumerate(frames):
            hh, ww = sizes[i]
            if img.shape[:2] != (hh, ww) or s.shape != (hh, ww) or lab.shape != (hh, ww):
                raise UserError(
                    f"image {name!r}: image {img.shape}, semantic {s.shape} and instances "
                    f"{lab.shape} must all be {hh}x{ww}"
                )
            images[i, :hh, :ww] = img
            sem[i, :hh, :ww] = s
            inst[i, :hh, :ww] = lab
            names.append(name)
            rows = []
            for k in np.unique(lab[lab > 0]):
                m = lab == k
                cls = int(s[m][0])
                x1, y1, x2, y2 = _box(m)
                rows.append(
                    {
                        "image": i,
                        "image_name": name,
                        "subset": "",
                        "instance_id": int(k),
                        "kind": kind,
                        "label": classes[cls],
                        "class_id": cls,
                        "x1": x1,
                        "y1": y1,
                        "x2": x2,
                        "y2": y2,
                        "area": int(m.sum()),
                        "occluded": 0,
                        "z_order": 0,
                        "group_id": 0,
                        "source": source,
                        "track_id": -1,
                        "attributes": {},
                    }
                )
            table.add(rows)
            objects += len(rows)
        table.close()
        if len(names) != n:
            raise UserError(f"expected {n} images, got {len(names)}")
        attrs = {
            "classes": list(classes),
            "image_names": names,
            "image_sizes": [[int(a), int(b)] for a, b in sizes],
            "objects_table": table.path.name,
            "pixel_convention": PIXEL_CONVENTION,
            "padding": PADDING,
            "source": source,
        }
        finish_dataset(tmp, group, attrs)
    return {
        "images": n,
        "objects": objects,
        "classes": list(classes),
        "size": [h, w],
        "padded": sum(1 for s in sizes if tuple(s) != (h, w)),
    }
