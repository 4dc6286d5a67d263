"""The dataset Zarr of ``dlpipe cvat`` and ``dlpipe import``: images, masks, attributes.

Layout (a Zarr v3 group):

* ``images`` (N, H, W) grey or (N, H, W, C) of the images' dtype;
* ``semantic`` (N, H, W) uint8, 0 background, class i is ``classes[i]``;
* ``instances`` (N, H, W) uint32, 0 background, 1..K per image;
* attributes ``classes`` (``classes[0] == "background"``), ``image_names``, optionally
  ``image_sizes`` ([[h, w], ...] of padded images), ``objects_table``, ``source``, ...;
* the objects table (:mod:`dlpipe.stores.table`) and the completion marker, last.

Arrays are chunked one image deep, ``chunk`` pixels square, with ``dimension_names``
``n, y, x[, c]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.stores.atomic import atomic_path, json_safe
from dlpipe.stores.marker import mark_complete, require_complete
from dlpipe.stores.table import ObjectsTable

__all__ = [
    "ARRAYS",
    "PADDING",
    "PIXEL_CONVENTION",
    "Dataset",
    "DatasetWriter",
    "array_keys",
    "create_dataset_array",
    "finish_dataset",
    "is_dataset",
    "open_dataset",
    "open_store",
    "write_instance_dataset",
]

ARRAYS = ("images", "semantic", "instances")
"""The arrays of a dataset Zarr (``instances`` only in instance datasets)."""
PIXEL_CONVENTION = "pixel (i, j) has its centre at x=j+0.5, y=i+0.5"
"""The ``pixel_convention`` attribute."""
PADDING = "images smaller than (H, W) are padded with 0 at the bottom and right"
"""The ``padding`` attribute of datasets of padded images."""
_BATCH_BYTES = 32 << 20

#: One image of a dataset: name, image (h, w[, c]), semantic (h, w), instances (h, w).
Item = tuple[str, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Dataset:
    """A dataset Zarr, opened read-only.

    Attributes
    ----------
    path : the store
    group : the Zarr group
    keys : names of its arrays
    attrs : its attributes
    classes : ``attrs["classes"]`` ([] when absent)
    """

    path: Path
    group: Any
    keys: set[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        """The array ``name`` (``images``, ``semantic``, ``instances``)."""
        return self.group[name]


def array_keys(group: Any) -> set[str]:
    """The names of a group's arrays (marker and table files are ignored quietly)."""
    with warnings.catch_warnings():  # the marker and tables are not Zarr nodes
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        return set(group.array_keys())


def open_store(path: str | Path, *, missing: str = "store not found") -> tuple[Any, set[str]]:
    """Open any Zarr group read-only, with the names of its arrays.

    Raises
    ------
    UserError
        ``missing`` when ``path`` does not exist; ``"not a Zarr group"`` when it is no group.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(missing, path=path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # zarr raises several types for "not a group"
        raise UserError("not a Zarr group", path=path) from None
    return group, array_keys(group)


def is_dataset(keys: set[str]) -> bool:
    """Whether a group with arrays ``keys`` is a dataset Zarr (``images`` and ``semantic``)."""
    return "images" in keys and "semantic" in keys


def open_dataset(
    path: str | Path,
    *,
    arrays: Sequence[str] = ("images", "semantic"),
    what: str = "a dataset",
    hint: str = "",
    missing: str = "dataset not found",
    complete: bool = True,
) -> Dataset:
    """Open a dataset Zarr and check it has ``arrays`` and its completion marker.

    Parameters
    ----------
    path : the store
    arrays : the arrays it must have
    what, hint : words of the error for missing arrays:
        ``"not <what>: no <arrays> array<hint>"``
    missing : the error for a path that does not exist
    complete : require the completion marker

    Raises
    ------
    UserError
        Not found, not a Zarr group, an array missing, or no completion marker.
    """
    path = Path(path)
    group, keys = open_store(path, missing=missing)
    absent = [k for k in arrays if k not in keys]
    if absent:
        raise UserError(f"not {what}: no {', '.join(absent)} array{hint}", path=path)
    if complete:
        require_complete(path, "dataset")
    attrs = dict(group.attrs)
    return Dataset(path, group, keys, attrs, list(attrs.get("classes", [])))


def create_dataset_array(
    group: Any,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    *,
    chunk: int = 1024,
    write_empty_chunks: bool = False,
) -> Any:
    """Create one array of a dataset Zarr: (N, H, W[, C]), chunks (1, chunk, chunk[, C]).

    Parameters
    ----------
    group : the dataset's Zarr group (being written)
    name : ``images``, ``semantic`` or ``instances``
    shape : (N, H, W) or (N, H, W, C); N may be 0 for an array that grows
    dtype : its dtype
    chunk : the chunk side (clipped to H and W)
    write_empty_chunks : store chunks that hold only zeros too (skips zarr's scan of every
        chunk; an empty chunk compresses to a few bytes)
    """
    n, h, w, *extra = (int(s) for s in shape)
    kwargs: dict[str, Any] = {}
    if write_empty_chunks:
        kwargs["config"] = {"write_empty_chunks": True}
    return group.create_array(
        name,
        shape=(n, h, w, *extra),
        chunks=(1, min(h, chunk), min(w, chunk), *extra),
        dtype=np.dtype(dtype),
        fill_value=0,
        dimension_names=("n", "y", "x", "c")[: 3 + len(extra)],
        **kwargs,
    )


class DatasetWriter:
    """Appends images to growing dataset arrays, in batches of about 32 MiB.

    Parameters
    ----------
    group : the dataset's Zarr group (being written)
    h, w : the image size
    chunk : the chunk side
    """

    def __init__(self, group: Any, h: int, w: int, chunk: int) -> None:
        self.group, self.h, self.w, self.chunk = group, h, w, chunk
        self.arrays: dict[str, Any] = {}
        self.buf: dict[str, list[np.ndarray]] = {}
        self.n = 0  # frames flushed
        self.cap = 0
        self.nbytes = 0

    def _array(self, name: str, sample: np.ndarray) -> Any:
        if name not in self.arrays:
            self.arrays[name] = create_dataset_array(
                self.group,
                name,
                (0, self.h, self.w, *sample.shape[2:]),
                sample.dtype,
                chunk=self.chunk,
                write_empty_chunks=True,
            )
        return self.arrays[name]

    def add(self, **frames: np.ndarray) -> None:
        """Append one image's arrays, by name (``images=..., semantic=..., ...``)."""
        for name, a in frames.items():
            self.buf.setdefault(name, []).append(a)
            self.nbytes += a.nbytes
        if self.nbytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered images."""
        if not self.buf:
            return
        k = len(next(iter(self.buf.values())))
        need = self.n + k
        if need > self.cap:
            self.cap = max(need, 2 * self.cap, 16)
            for name, frames in self.buf.items():
                arr = self._array(name, frames[0])
                arr.resize((self.cap, *arr.shape[1:]))
        for name, frames in self.buf.items():
            self._array(name, frames[0])[self.n : need] = np.stack(frames)
        self.n = need
        self.buf, self.nbytes = {}, 0

    def finish(self, order: np.ndarray | None = None) -> None:
        """Flush, trim the arrays to the images written, and reorder them by ``order``."""
        self.flush()
        for arr in self.arrays.values():
            arr.resize((self.n, *arr.shape[1:]))
        if order is not None:  # rare: image ids out of document order
            for arr in self.arrays.values():
                data = arr[:]
                arr[:] = data[order]


def finish_dataset(store: str | Path, group: Any, attrs: Mapping[str, Any]) -> None:
    """Set the dataset's attributes and write its completion marker (``"complete\\n"``)."""
    group.attrs.update(json_safe(dict(attrs)))  # strict JSON: no bare NaN
    mark_complete(store)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def write_instance_dataset(
    out: str | Path,
    frames: Iterable[Item],
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

    The layout of this module (as ``dlpipe cvat`` writes it): ``images`` (N, H, W) grey or
    (N, H, W, 3) RGB of ``dtype`` (uint8 or uint16), ``semantic`` (N, H, W) uint8
    (0 background), ``instances`` (N, H, W) uint32 (0 background, 1..K per image),
    attributes ``classes`` (with ``classes[0] == "background"``), ``image_names``,
    ``image_sizes`` ([[h, w], ...]: images of different sizes are padded with zeros at the
    bottom and right to the largest H and W), ``source``; the objects table
    ``objects.parquet`` (or ``objects.csv``, ``table_format``; one row per object, the
    columns of ``dlpipe cvat``'s) and the completion marker last.

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
