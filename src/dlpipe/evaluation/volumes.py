"""Reading and writing label volumes: Zarr arrays, OME-Zarr groups and TIFF stacks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError

COMPLETE_MARKER = ".dlpipe_complete"


def _open_zarr(path: Path) -> Any:
    import warnings

    import zarr

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
    """
    path = Path(path)
    if not path.exists():
        raise UserError("no such file or folder", path=path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            return tifffile.memmap(str(path), mode="r")
        except (ValueError, OSError):
            try:
                return tifffile.imread(str(path))
            except Exception as exc:
                raise UserError(f"cannot read TIFF: {exc}", path=path) from None
    import zarr

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


def dlpipe_attrs(path: str | Path) -> dict[str, Any]:
    """The ``dlpipe`` attributes of the OME-Zarr group holding ``path`` ({} if none).

    Looks at ``path`` and its parents up to three levels (a path to ``VOL.zarr/labels/x/0``
    finds ``VOL.zarr``).
    """
    path = Path(path)
    for p in [path, *list(path.parents)[:4]]:
        for meta in ("zarr.json", ".zattrs"):
            f = p / meta
            if f.is_file():
                try:
                    data = json.loads(f.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                attrs = data.get("attributes", data) if meta == "zarr.json" else data
                if isinstance(attrs, dict) and isinstance(attrs.get("dlpipe"), dict):
                    return attrs["dlpipe"]
        if p.suffix == ".zarr":
            break
    return {}


def test_range(*paths: str | Path) -> tuple[int, int] | None:
    """The half-open test z-range from the ``dlpipe.split`` attributes of the first path
    that has one, else None."""
    for p in paths:
        split = dlpipe_attrs(p).get("split") or {}
        test = split.get("test")
        if test is not None:
            return int(test[0]), int(test[1])
    return None


test_range.__test__ = False  # not a pytest test


def write_labels(
    out: str | Path,
    blocks: Any,
    shape: Sequence[int],
    chunks: Sequence[int],
    *,
    labels_name: str = "phases",
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a uint8 label volume as ``OUT.zarr/labels/<name>/0`` (Zarr v3), atomically.

    ``blocks`` yields ``(slices, block_array)`` pairs covering the volume. The group gets
    the ``dlpipe`` attributes ``attrs`` and the marker ``.dlpipe_complete`` is written last.
    """
    import zarr

    from dlpipe._io import atomic_path

    out = Path(out)
    with atomic_path(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        root.attrs["dlpipe"] = dict(attrs or {})
        labels = root.require_group("labels")
        labels.attrs["labels"] = [labels_name]
        grp = labels.require_group(labels_name)
        arr = grp.create_array(
            "0",
            shape=tuple(shape),
            chunks=tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)),
            dtype="uint8",
            fill_value=0,
        )
        for sl, block in blocks:
            arr[sl] = np.asarray(block, dtype=np.uint8)
        (tmp / COMPLETE_MARKER).write_text("complete\n")
    return out


def chunk_shape(arr: Any, default: int = 64) -> tuple[int, ...]:
    """The chunk shape of a Zarr array, or ``default`` per axis for NumPy arrays."""
    chunks = getattr(arr, "chunks", None)
    if isinstance(chunks, tuple) and all(isinstance(c, int) for c in chunks):
        return chunks
    return tuple(min(default, s) for s in arr.shape)
