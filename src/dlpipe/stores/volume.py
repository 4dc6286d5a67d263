"""The tiled volume (``VOL.zarr`` of ``dlpipe tile``) and label volumes derived from it.

A tiled volume is an OME-Zarr group: image levels ``0, 1, ...`` (z, y, x), label images
``labels/<name>/<level>`` (uint8), the ``dlpipe`` root attributes (``statistics``, ``split``,
``source``, ``labels``, ...) and the completion marker (:mod:`dlpipe.stores.marker`).
A label volume (``PRED.zarr``, ``CLEAN.zarr``, a baseline's output) holds the label pyramid
``labels/<name>/<level>`` with the NGFF attributes of :mod:`dlpipe.stores.ngff`, carrying the
voxel size, unit and number of levels of the store it was derived from, and a root image
(the label values, hidden in viewers) so that NGFF readers open it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.stores import ngff
from dlpipe.stores.atomic import atomic_path, json_safe
from dlpipe.stores.marker import mark_complete, require_complete
from dlpipe.stores.pyramid import source_levels, write_label_pyramid

__all__ = [
    "Volume",
    "chunk_shape",
    "dlpipe_attrs",
    "is_zarr_group",
    "open_labels",
    "open_volume",
    "require_finished",
    "source_grid",
    "write_labels",
]


@dataclass
class Volume:
    """A complete tiled volume, opened read-only.

    Attributes
    ----------
    path : the store
    root : the Zarr group
    image : the image level opened (``level``), a ``zarr.Array``
    level : its path (``"0"``)
    labels : level 0 of the label image (``labels/<labels_name>/0``), or None
    labels_name : the label image's name, or None
    attrs : the ``dlpipe`` root attributes
    axes : axis names of the image ([] when the store has no ``multiscales``)
    voxel_size : the level's voxel size, or None
    unit : the unit of the axes, or None
    ngff : the root attributes (``ome`` for NGFF 0.5, top level for 0.4)
    """

    path: Path
    root: Any
    image: Any
    level: str
    labels: Any | None
    labels_name: str | None
    attrs: dict[str, Any]
    axes: list[str]
    voxel_size: list[float] | None
    unit: str | None
    ngff: dict[str, Any] = field(default_factory=dict)


def is_zarr_group(path: str | Path) -> bool:
    """Whether ``path`` is a folder with Zarr v3 (``zarr.json``) or v2 (``.zgroup``) metadata."""
    path = Path(path)
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def open_volume(
    path: str | Path,
    *,
    level: str = "0",
    labels: str | None = None,
    what: str = "volume",
    hint: str = ": re-run `dlpipe tile` to finish it",
) -> Volume:
    """Open a tiled volume (written by ``dlpipe tile``) for reading.

    Parameters
    ----------
    path : path
        ``VOL.zarr``.
    level : str
        The image level to open.
    labels : str, optional
        The label image to open; default the one named by ``dlpipe.labels.name``.
    what, hint : str
        Words of the error raised for a store without its completion marker.

    Returns
    -------
    Volume

    Raises
    ------
    UserError
        Not found, not a Zarr group, no completion marker (half-written or not made by
        ``dlpipe tile``), or no image level ``level``.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found", path=path)
    if not is_zarr_group(path):
        raise UserError("not a Zarr group (expected VOL.zarr from `dlpipe tile`)", path=path)
    require_complete(path, what, hint)
    root = zarr.open_group(str(path), mode="r")
    if level not in root:
        raise UserError(f"no image level {level!r} in the volume", path=path)
    root_attrs = dict(root.attrs)
    attrs = dict(root_attrs.get("dlpipe", {}))
    axes, voxel_size, unit = ngff.spatial_metadata(root_attrs, level)
    name = labels or (attrs.get("labels") or {}).get("name")
    lab = root[f"labels/{name}/0"] if name and f"labels/{name}/0" in root else None
    return Volume(
        path=path,
        root=root,
        image=root[level],
        level=level,
        labels=lab,
        labels_name=name if lab is not None else None,
        attrs=attrs,
        axes=axes,
        voxel_size=voxel_size,
        unit=unit,
        ngff=dict(root_attrs.get("ome", root_attrs)),
    )


def _open_zarr(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # marker files in a store are not Zarr nodes: fine
            warnings.simplefilter("ignore", UserWarning)
            return zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise UserError(f"cannot open as Zarr: {exc.__class__.__name__}", path=path) from None


def open_labels(path: str | Path, *, labels_name: str = "phases", image: bool = False) -> Any:
    """Open a (z, y, x) volume without reading it.

    Parameters
    ----------
    path : a TIFF file (``.tif``/``.tiff``), a Zarr array, or a Zarr/OME-Zarr group; for a
        group, ``labels/<labels_name>/0`` is taken (or level ``0`` when ``image`` is true or
        the group has no labels).
    labels_name : name of the NGFF label group.
    image : take the image (level ``0``) of an OME-Zarr group instead of its labels.

    Returns
    -------
    array-like
        A ``zarr.Array`` (sliced lazily) or a NumPy array (TIFF; memory-mapped when possible),
        shape (z, y, x) or (y, x).

    Raises
    ------
    UserError
        Not found, unreadable, or a store written by dlpipe without its completion marker
        (:func:`require_finished`: the run that wrote it failed or was killed).
    """
    path = Path(path)
    if not path.exists():
        raise UserError("no such file or folder", path=path)
    require_finished(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile  # only for TIFF inputs

        try:
            return tifffile.memmap(str(path), mode="r")
        except (ValueError, OSError):
            try:
                return tifffile.imread(str(path))
            except Exception as exc:
                raise UserError(f"cannot read TIFF: {exc}", path=path) from None
    node = _open_zarr(path)
    if isinstance(node, zarr.Array):
        return node
    keys = [f"labels/{labels_name}/0", "0"] if not image else ["0"]
    for key in keys:
        try:
            sub = node[key]
        except KeyError:
            continue
        if isinstance(sub, zarr.Array):
            return sub
    raise UserError(f"Zarr group has no array {' or '.join(repr(k) for k in keys)}", path=path)


def _group_attrs(path: Path) -> dict[str, Any] | None:
    """The attributes of the Zarr node at ``path`` read from its JSON (None if none)."""
    for meta in ("zarr.json", ".zattrs"):
        f = path / meta
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            attrs = data.get("attributes", data) if meta == "zarr.json" else data
            if isinstance(attrs, dict):
                return attrs
    return None


def _dlpipe_root(path: Path) -> Path | None:
    """The group with ``dlpipe`` root attributes holding ``path`` (itself or up to 4 parents)."""
    for p in [path, *list(path.parents)[:4]]:
        attrs = _group_attrs(p)
        if attrs is not None and isinstance(attrs.get("dlpipe"), dict):
            return p
        if p.suffix == ".zarr":
            break
    return None


def require_finished(path: str | Path) -> None:
    """Refuse ``path`` when it is (or lies in) a store dlpipe wrote that has no marker.

    The one check that an input store is complete: a Zarr group with ``dlpipe`` root
    attributes is complete only with its completion marker (:mod:`dlpipe.stores.marker`).
    A Zarr or TIFF without ``dlpipe`` attributes (the user's own data) is accepted.

    Raises
    ------
    UserError
        ``"incomplete store (no ... marker): ..."``, naming the store.
    """
    root = _dlpipe_root(Path(path))
    if root is not None:
        require_complete(
            root, "store", ": the run that wrote it failed or was killed; run it again"
        )


def dlpipe_attrs(path: str | Path) -> dict[str, Any]:
    """The ``dlpipe`` attributes of the OME-Zarr group holding ``path`` ({} if none).

    Looks at ``path`` and its parents up to three levels (a path to ``VOL.zarr/labels/x/0``
    finds ``VOL.zarr``).
    """
    root = _dlpipe_root(Path(path))
    return (_group_attrs(root) or {})["dlpipe"] if root is not None else {}


def source_grid(
    path: str | Path | None, labels_name: str = "phases"
) -> tuple[list[float] | None, str | None]:
    """The voxel size and unit of the store ``path`` (level 0), to carry to a derived store.

    Looked up in the root ``multiscales`` (an image pyramid), else in those of
    ``labels/<labels_name>`` (a label volume). ``(None, None)`` for a TIFF, a bare array,
    or a store without NGFF attributes.
    """
    if path is None:
        return None, None
    path = Path(path)
    for node in (path, path / "labels" / labels_name):
        attrs = _group_attrs(node)
        if attrs:
            _, voxel_size, unit = ngff.spatial_metadata(attrs)
            if voxel_size is not None:
                return voxel_size, unit
    return None, None


def write_labels(
    out: str | Path,
    blocks: Iterable[tuple[Any, Any]],
    shape: Sequence[int],
    chunks: Sequence[int],
    *,
    labels_name: str = "phases",
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    like: str | Path | None = None,
    classes: Sequence[str] | None = None,
    voxel_size: Sequence[float] | None = None,
    unit: str | None = None,
) -> Path:
    """Write a uint8 label volume as ``OUT.zarr/labels/<name>/0`` (Zarr v3), atomically.

    Parameters
    ----------
    out : the store to write
    blocks : ``(slices, block_array)`` pairs covering the volume
    shape, chunks : of the label array (chunks are clipped to the shape)
    labels_name : the label image's name
    attrs : the root's ``dlpipe`` attributes
    overwrite : replace ``out`` if it exists
    like : a store to take the voxel size, unit (:func:`source_grid`) and number of pyramid
        levels from
    classes : class names for the label ``properties``; default ``attrs["classes"]``
    voxel_size, unit : override those of ``like`` (default voxel size 1, no unit)

    Notes
    -----
    The ``labels`` group and the label image get the NGFF attributes of
    :mod:`dlpipe.stores.ngff` (colours for every class, or for the values written when no
    classes are known); the labels get the pyramid of ``like`` and the root a hidden image of
    the label values (:func:`dlpipe.stores.pyramid.write_label_pyramid`), so the store is an
    NGFF image; the completion marker is written last.
    """
    attrs = dict(attrs or {})
    names = list(classes if classes is not None else attrs.get("classes") or [])
    like_size, like_unit = source_grid(like, labels_name)
    size = [float(v) for v in (voxel_size or like_size or [1.0] * len(shape))]
    size = ([1.0] * len(shape) + size)[-len(shape) :]
    unit = unit or like_unit
    seen = np.zeros(256, np.int64)
    out = Path(out)
    with atomic_path(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs["dlpipe"] = json_safe(attrs)  # strict JSON: no bare NaN
        labels = root.require_group("labels")
        labels.attrs.update(ngff.labels_group_attrs([labels_name], "0.5"))
        grp = labels.require_group(labels_name)
        arr = grp.create_array(
            "0",
            shape=tuple(shape),
            chunks=tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)),
            dtype="uint8",
            fill_value=0,
            dimension_names=list(ngff.AXES[-len(shape) :]),
        )
        for sl, block in blocks:
            data = np.asarray(block, dtype=np.uint8)
            arr[sl] = data
            if not names:
                seen += np.bincount(data.ravel(), minlength=256)
        values = range(len(names)) if names else np.flatnonzero(seen)
        grp.attrs.update(
            ngff.label_image_attrs(
                labels_name, 1, size, unit, "0.5", [int(v) for v in values], classes=names
            )
        )
        write_label_pyramid(tmp, labels_name, source_levels(like, labels_name), image_name=out.stem)
        mark_complete(tmp)
    return out


def chunk_shape(arr: Any, default: int = 64) -> tuple[int, ...]:
    """The chunk shape of a Zarr array, or ``default`` per axis for NumPy arrays."""
    chunks = getattr(arr, "chunks", None)
    if isinstance(chunks, tuple) and all(isinstance(c, int) for c in chunks):
        return chunks
    return tuple(min(default, s) for s in arr.shape)
