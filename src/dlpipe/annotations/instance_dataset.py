"""Write an instance dataset Zarr in the layout of ``dlpipe cvat`` (from any reader)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.annotations.convert import MARKER
from dlpipe.errors import UserError
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.table import ObjectsTable


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

    The layout is that of :func:`dlpipe.annotations.convert`: ``images`` (N, H, W) grey or
    (N, H, W, 3) RGB of ``dtype`` (uint8 or uint16), ``semantic`` (N, H, W) uint8
    (0 background), ``instances`` (N, H, W) uint32 (0 background, 1..K per image),
    attributes ``classes`` (with ``classes[0] == "background"``), ``image_names``,
    ``image_sizes`` ([[h, w], ...]: images of different sizes are padded with zeros at the
    bottom and right to the largest H and W), ``source``; the objects table
    ``objects.parquet`` (or ``objects.csv``, ``table_format``; one row per object, the
    columns of ``dlpipe cvat``'s) and the marker ``.dlpipe_complete`` last.

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
    import zarr

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
        ch = (1, min(h, chunk), min(w, chunk))
        dims = ("n", "y", "x")
        images = group.create_array(
            "images",
            shape=(n, h, w, *extra),
            chunks=(*ch, *extra),
            dtype=np.dtype(dtype),
            fill_value=0,
            dimension_names=(*dims, "c")[: 3 + len(extra)],
        )
        sem = group.create_array(
            "semantic",
            shape=(n, h, w),
            chunks=ch,
            dtype="uint8",
            fill_value=0,
            dimension_names=dims,
        )
        inst = group.create_array(
            "instances",
            shape=(n, h, w),
            chunks=ch,
            dtype="uint32",
            fill_value=0,
            dimension_names=dims,
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
        group.attrs.update(
            {
                "classes": list(classes),
                "image_names": names,
                "image_sizes": [[int(a), int(b)] for a, b in sizes],
                "objects_table": table.path.name,
                "pixel_convention": "pixel (i, j) has its centre at x=j+0.5, y=i+0.5",
                "padding": "images smaller than (H, W) are padded with 0 at the bottom and right",
                "source": source,
            }
        )
        (tmp / MARKER).write_text("complete\n")
    return {
        "images": n,
        "objects": objects,
        "classes": list(classes),
        "size": [h, w],
        "padded": sum(1 for s in sizes if tuple(s) != (h, w)),
    }
