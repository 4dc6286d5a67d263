"""The reader interface: a 3D volume read slab by slab, and the memory-mapped reader.

Each reader knows the shape (z, y, x) and dtype of the volume without reading the voxels;
:meth:`Source.read` returns the z-slab ``[z0, z1)`` as an in-memory NumPy array.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABEL_DTYPES", "SUPPORTED_DTYPES", "MemmapSource", "Source"]

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")


class Source:
    """A 3D volume (z, y, x) read slab by slab.

    Attributes
    ----------
    path : Path
    shape : tuple of int
        (z, y, x).
    dtype : numpy.dtype
        Native byte order.
    kind : str
        Reader name (``tiff``, ``slices``, ``raw``, ``npy``, ``hdf5``, ``zarr``).
    """

    kind = "?"

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def read(self, z0: int, z1: int) -> np.ndarray:
        """Voxels of slices ``[z0, z1)``, shape (z1 - z0, y, x), native byte order."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input for resuming (path, size, modification time)."""
        p = self.path
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            size = sum(f.stat().st_size for f in files)
            mtime = max((f.stat().st_mtime_ns for f in files), default=0)
        else:
            st = p.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        return {
            "path": str(p.resolve()),
            "kind": self.kind,
            "size": size,
            "mtime_ns": mtime,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
        }

    def close(self) -> None:
        pass


class MemmapSource(Source):
    """A memory map (raw, .npy, contiguous TIFF); pages are released after each slab.

    The slab is copied out of the map and the mapped pages are then dropped with
    ``madvise(MADV_DONTNEED)``, so the resident set stays one slab whatever the file size.
    """

    def __init__(self, path: Path, mm: np.memmap, kind: str) -> None:
        super().__init__(path, mm.shape, mm.dtype)
        self.kind = kind
        self._mm = mm

    def read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        out[...] = self._mm[z0:z1]  # converts byte order if needed
        self._release()
        return out

    def _release(self) -> None:
        raw = getattr(self._mm, "_mmap", None)
        if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                raw.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # pragma: no cover - platform without madvise
                pass

    def close(self) -> None:
        raw = getattr(self._mm, "_mmap", None)
        del self._mm
        if raw is not None:
            try:
                raw.close()
            except (BufferError, ValueError):  # views still alive elsewhere
                pass
