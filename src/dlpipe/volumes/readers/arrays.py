"""HDF5 datasets and Zarr arrays (v2 or v3), both sliced lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores.chunks import check_missing_chunks, read_checked
from dlpipe.volumes.readers.base import Source

__all__ = ["open_hdf5", "open_zarr"]


class _ArraySource(Source):
    """An HDF5 dataset or a Zarr array (both slice lazily)."""

    def __init__(self, path: Path, arr: Any, kind: str, handle: Any = None) -> None:
        super().__init__(path, arr.shape, arr.dtype)
        self.kind = kind
        self._arr = arr
        self._handle = handle

    def read(self, z0: int, z1: int) -> np.ndarray:
        if self.kind == "zarr":
            return np.ascontiguousarray(read_checked(self._arr, slice(z0, z1), self.path))
        return np.ascontiguousarray(self._arr[z0:z1], dtype=self.dtype)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def open_hdf5(p: Path, dataset: str) -> Source:
    """Dataset ``dataset`` of HDF5 file ``p`` (the only dataset when ``dataset`` is empty)."""
    import h5py  # heavy optional import: only when reading HDF5

    if not p.exists():
        raise UserError("input not found", path=p)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise UserError(f"cannot read HDF5 file: {exc}", path=p) from None
    if not dataset or dataset == "/":
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if len(names) != 1:
            f.close()
            raise UserError(
                f"name the dataset as FILE.h5:/path (datasets: {', '.join(names)})", path=p
            )
        dataset = names[0]
    obj = f.get(dataset)
    if not isinstance(obj, h5py.Dataset):
        f.close()
        raise UserError(f"no dataset {dataset!r} in the file", path=p)
    return _ArraySource(p, obj, "hdf5", handle=f)


def open_zarr(p: Path) -> Source:
    """The Zarr array (v2 or v3) at ``p``; a missing chunk is refused."""
    import zarr  # heavy import: only when reading Zarr

    try:
        arr = zarr.open_array(p, mode="r")
    except Exception as exc:
        raise UserError(f"cannot open Zarr array: {exc}", path=p) from None
    check_missing_chunks(arr, p)
    return _ArraySource(p, arr, "zarr")
