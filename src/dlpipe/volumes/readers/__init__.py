"""Volume readers: every input format behind one slab-by-slab interface.

:func:`open_source` picks a reader from the path; each reader knows the shape (z, y, x)
and dtype of the volume without reading the voxels, and :meth:`Source.read` returns
the z-slab ``[z0, z1)`` as an in-memory NumPy array. Nothing reads the whole volume.

One module per format family: :mod:`.tiff`, :mod:`.slices` (folders of slices),
:mod:`.raw` (raw binary and ``.npy``), :mod:`.arrays` (HDF5 and Zarr); the interface
is in :mod:`.base`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlpipe.errors import UserError
from dlpipe.volumes.readers.arrays import open_hdf5, open_zarr
from dlpipe.volumes.readers.base import LABEL_DTYPES, SUPPORTED_DTYPES, Source
from dlpipe.volumes.readers.raw import open_npy, open_raw, read_raw_sidecar
from dlpipe.volumes.readers.slices import SLICE_SUFFIXES, natural_key, open_slices
from dlpipe.volumes.readers.tiff import open_tiff

__all__ = [
    "LABEL_DTYPES",
    "SLICE_SUFFIXES",
    "SUPPORTED_DTYPES",
    "Source",
    "natural_key",
    "open_source",
    "read_raw_sidecar",
]


def open_source(
    path: str | Path,
    *,
    raw_shape: tuple[int, int, int] | None = None,
    raw_dtype: str | None = None,
    byte_order: str | None = None,
    raw_offset: int = 0,
    dtypes: tuple[str, ...] = SUPPORTED_DTYPES,
) -> Source:
    """Open a 3D volume for slab-by-slab reading.

    Parameters
    ----------
    path : path
        A multi-page TIFF/BigTIFF (``.tif``, ``.tiff``), a folder of 2D slices, a raw
        binary (``.raw``, ``.bin``, ``.vol``; shape/dtype from the arguments or a
        ``FILE.raw.info`` / ``FILE.raw.yaml`` / ``FILE.yaml`` sidecar), a ``.npy`` file,
        an HDF5 dataset ``file.h5:/path/to/dataset``, or a Zarr array (v2 or v3).
    raw_shape, raw_dtype, byte_order, raw_offset
        Layout of a raw file (z, y, x; ``uint8`` ...; ``little`` or ``big``; header bytes).
    dtypes : tuple of str
        The voxel types accepted (labels accept every integer type).

    Returns
    -------
    Source
        Shape (z, y, x), dtype one of uint8, uint16, int16, float32.

    Raises
    ------
    UserError
        Missing, empty, unreadable or malformed input, unsupported dtype, not 3D.
    """
    text = str(path)
    h5 = re.match(r"^(.*\.(?:h5|hdf5|hdf|he5|nxs)):(/?.*)$", text, re.IGNORECASE)
    if h5:
        src = open_hdf5(Path(h5.group(1)), h5.group(2))
    else:
        p = Path(text)
        if not p.exists():
            raise UserError("input not found", path=p)
        suffix = p.suffix.lower()
        if p.is_dir() and (_is_zarr(p)):
            src = open_zarr(p)
        elif p.is_dir():
            src = open_slices(p)
        elif not os.access(p, os.R_OK):
            raise UserError("input is not readable (permission denied)", path=p)
        elif p.stat().st_size == 0:
            raise UserError("input is empty (0 bytes)", path=p)
        elif suffix in (".tif", ".tiff", ".btf", ".tf8"):
            src = open_tiff(p)
        elif suffix == ".npy":
            src = open_npy(p)
        elif suffix in (".h5", ".hdf5", ".hdf", ".he5", ".nxs"):
            src = open_hdf5(p, "")
        else:
            src = open_raw(p, raw_shape, raw_dtype, byte_order, raw_offset)
    try:
        _check_volume(src, dtypes)
    except UserError:
        src.close()
        raise
    return src


def _check_volume(src: Source, dtypes: tuple[str, ...]) -> None:
    if len(src.shape) != 3:
        raise UserError(f"expected a 3D volume (z, y, x), got shape {src.shape}", path=src.path)
    if 0 in src.shape:
        raise UserError(f"input is empty (shape {src.shape})", path=src.path)
    if src.dtype.name not in dtypes:
        raise UserError(
            f"unsupported dtype {src.dtype.name} (supported: {', '.join(dtypes)})", path=src.path
        )


def _is_zarr(p: Path) -> bool:
    return (p / "zarr.json").is_file() or (p / ".zarray").is_file()
