"""Volume readers: every input format behind one slab-by-slab interface.

:func:`open_source` picks a reader from the path; each reader knows the shape (z, y, x)
and dtype of the volume without reading the voxels, and :meth:`Source.read` returns
the z-slab ``[z0, z1)`` as an in-memory NumPy array. Nothing reads the whole volume.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dlpipe.errors import UserError
from dlpipe.stores.chunks import check_missing_chunks, read_checked

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")
LABEL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")


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


class _MemmapSource(Source):
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


class _TiffPagesSource(Source):
    """A multi-page TIFF that cannot be memory-mapped (compressed or scattered strips)."""

    kind = "tiff"

    def __init__(self, path: Path, tif: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        super().__init__(path, shape, dtype)
        self._tif = tif

    def read(self, z0: int, z1: int) -> np.ndarray:
        data = (
            self._tif.asarray(key=range(z0, z1), series=0)
            if z1 - z0 > 1
            else self._tif.asarray(key=z0, series=0)[None]
        )
        return np.ascontiguousarray(data.reshape(z1 - z0, *self.shape[1:]), dtype=self.dtype)

    def close(self) -> None:
        self._tif.close()


class _SliceFolderSource(Source):
    """A folder of 2D slices (TIFF or PNG) in natural sort order."""

    kind = "slices"

    def __init__(
        self, path: Path, files: list[Path], shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        super().__init__(path, shape, dtype)
        self.files = files

    def read(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=self.dtype)
        for i, f in enumerate(self.files[z0:z1]):
            img = _read_slice(f)
            if img.shape != self.shape[1:] or img.dtype != self.dtype:
                raise UserError(
                    f"slice {img.shape} {img.dtype} differs from the first slice "
                    f"{self.shape[1:]} {self.dtype}",
                    path=f,
                )
            out[i] = img
        return out


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


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


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
        src = _open_hdf5(Path(h5.group(1)), h5.group(2))
    else:
        p = Path(text)
        if not p.exists():
            raise UserError("input not found", path=p)
        suffix = p.suffix.lower()
        if p.is_dir() and (_is_zarr(p)):
            src = _open_zarr(p)
        elif p.is_dir():
            src = _open_slices(p)
        elif not os.access(p, os.R_OK):
            raise UserError("input is not readable (permission denied)", path=p)
        elif p.stat().st_size == 0:
            raise UserError("input is empty (0 bytes)", path=p)
        elif suffix in (".tif", ".tiff", ".btf", ".tf8"):
            src = _open_tiff(p)
        elif suffix == ".npy":
            src = _open_npy(p)
        elif suffix in (".h5", ".hdf5", ".hdf", ".he5", ".nxs"):
            src = _open_hdf5(p, "")
        else:
            src = _open_raw(p, raw_shape, raw_dtype, byte_order, raw_offset)
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


def _open_tiff(p: Path) -> Source:
    import tifffile

    try:
        with _quiet_tifffile():  # its warnings about a damaged file become one UserError
            tif = tifffile.TiffFile(p)
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
            _check_tiff_complete(tif, p, shape)
    except UserError:
        tif.close()
        raise
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise UserError(f"cannot read TIFF: {exc}", path=p) from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) == 3:
        try:
            mm = tifffile.memmap(p, mode="r")
        except (ValueError, OSError):  # compressed or not contiguous: read page by page
            mm = None
        if mm is not None:
            tif.close()
            return _MemmapSource(p, mm.reshape(shape), "tiff")
    return _TiffPagesSource(p, tif, shape, dtype)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log warnings (a truncated file is reported as one error)."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _declared_slices(tif: Any, plane: tuple[int, ...]) -> int | None:
    """Number of 2D slices the TIFF's own metadata declares (ImageJ ``images=``, or
    tifffile's JSON ``shape``), None when it declares none."""
    ij = tif.imagej_metadata or {}
    if isinstance(ij.get("images"), int):
        return int(ij["images"])
    shaped = tif.shaped_metadata or ()
    if shaped and isinstance(shaped[0], dict) and isinstance(shaped[0].get("shape"), list):
        dims = [int(v) for v in shaped[0]["shape"]]
        if len(dims) >= 2 and tuple(dims[-len(plane) :]) == tuple(plane):
            return int(np.prod(dims[: -len(plane)], dtype=np.int64)) if len(dims) > 2 else 1
    return None


def _check_tiff_complete(tif: Any, p: Path, shape: tuple[int, ...]) -> None:
    """Refuse a TIFF cut short: fewer slices or pages than its metadata declares, or
    image data past the end of the file.

    tifffile reads a truncated file without complaint, as fewer slices (a compressed
    file) or as the full shape with data past the end (an uncompressed one).
    """
    size = p.stat().st_size
    series = tif.series[0]
    plane = tuple(shape[-2:])
    n_slices = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    declared = _declared_slices(tif, plane)
    if declared is not None and declared != n_slices:
        raise UserError(
            f"TIFF declares {declared} slices but holds {n_slices} (file cut short?)", path=p
        )
    if series.dataoffset is not None:  # contiguous: one extent
        end = int(series.dataoffset) + int(series.nbytes)
        if end > size:
            raise UserError(
                f"TIFF cut short: image data ends at byte {end} but the file has {size} bytes",
                path=p,
            )
        return
    pages = tif.pages
    n_pages = len(pages)
    if tuple(pages[0].shape) == plane and n_pages < n_slices:
        raise UserError(
            f"TIFF cut short: {n_slices} slices need {n_slices} pages, the file has {n_pages}",
            path=p,
        )
    for i, page in enumerate(pages):
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)]
        if ends and max(ends) > size:
            raise UserError(
                f"TIFF cut short: page {i} ends at byte {max(ends)} but the file has {size} bytes",
                path=p,
            )


def _open_npy(p: Path) -> Source:
    try:
        mm = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read .npy file: {exc}", path=p) from None
    if not isinstance(mm, np.memmap):  # pragma: no cover - np.load always maps a plain .npy
        raise UserError("cannot memory-map .npy file", path=p)
    return _MemmapSource(p, mm, "npy")


def _open_hdf5(p: Path, dataset: str) -> Source:
    import h5py

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


def _open_zarr(p: Path) -> Source:
    import zarr

    try:
        arr = zarr.open_array(p, mode="r")
    except Exception as exc:
        raise UserError(f"cannot open Zarr array: {exc}", path=p) from None
    check_missing_chunks(arr, p)
    return _ArraySource(p, arr, "zarr")


def _read_slice(f: Path) -> np.ndarray:
    try:
        if f.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(f)
        from PIL import Image

        with Image.open(f) as im:
            return np.asarray(im)
    except Exception as exc:
        raise UserError(f"cannot read slice image: {exc}", path=f) from None


def _slice_header(f: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a slice image from its header, without decoding the pixels."""
    try:
        if f.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(f) as t:
                s = t.series[0]
                return tuple(s.shape), np.dtype(s.dtype)
        from PIL import Image

        with Image.open(f) as im:
            w, h = im.size
            modes = {
                "L": "uint8",
                "P": "uint8",
                "1": "bool",
                "I;16": "uint16",
                "I;16B": "uint16",
                "I": "int32",
                "F": "float32",
            }
            bands = len(im.getbands())
            shape = (h, w) if bands == 1 else (h, w, bands)
            return shape, np.dtype(modes.get(im.mode, "uint8"))
    except Exception as exc:
        raise UserError(f"cannot read slice image: {exc}", path=f) from None


def _open_slices(p: Path) -> Source:
    files = sorted(
        (
            f
            for f in p.iterdir()
            if f.is_file() and f.suffix.lower() in SLICE_SUFFIXES and not f.name.startswith(".")
        ),
        key=lambda f: natural_key(f.name),
    )
    if not files:
        raise UserError(
            f"input is empty: no slice images ({', '.join(SLICE_SUFFIXES)}) in the folder", path=p
        )
    shape0, dtype0 = _slice_header(files[0])
    if len(shape0) != 2:
        raise UserError(f"slices must be 2D greyscale images, got shape {shape0}", path=files[0])
    for f in files[1:]:
        shape, dtype = _slice_header(f)
        if shape != shape0 or dtype != dtype0:
            raise UserError(
                f"slice size {shape} {dtype} differs from the first slice "
                f"{files[0].name} {shape0} {dtype0}",
                path=f,
            )
    return _SliceFolderSource(p, files, (len(files), *shape0), dtype0)


def read_raw_sidecar(p: Path) -> dict[str, Any]:
    """Shape, dtype and byte order of a raw file from ``.raw.info`` or YAML beside it.

    ``FILE.raw.info`` holds ``key = value`` or ``key: value`` lines; ``FILE.yaml`` /
    ``FILE.raw.yaml`` is a YAML mapping. Keys: ``shape`` (z, y, x) or ``nz``/``ny``/``nx``,
    ``dtype``, ``byte_order`` (``little``/``big``), ``offset``.
    """
    for cand in (
        p.with_name(p.name + ".info"),
        p.with_name(p.name + ".yaml"),
        p.with_name(p.name + ".yml"),
        p.with_suffix(".yaml"),
        p.with_suffix(".yml"),
    ):
        if cand.is_file():
            text = cand.read_text()
            try:
                data = (
                    yaml.safe_load(text.replace("=", ":"))
                    if cand.suffix == ".info"
                    else yaml.safe_load(text)
                )
            except yaml.YAMLError:
                raise UserError("cannot parse raw sidecar", path=cand) from None
            if not isinstance(data, dict):
                raise UserError("raw sidecar must be a mapping of keys to values", path=cand)
            data = {str(k).strip().lower(): v for k, v in data.items()}
            if "shape" not in data and all(k in data for k in ("nz", "ny", "nx")):
                data["shape"] = [data["nz"], data["ny"], data["nx"]]
            if isinstance(data.get("shape"), str):
                data["shape"] = [int(v) for v in re.split(r"[\s,x×]+", data["shape"]) if v]
            data["_sidecar"] = str(cand)
            return data
    return {}


def _open_raw(p: Path, shape: Any, dtype: Any, byte_order: Any, offset: int) -> Source:
    side = read_raw_sidecar(p)
    shape = shape or side.get("shape")
    dtype = dtype or side.get("dtype")
    byte_order = byte_order or side.get("byte_order") or side.get("endian") or "little"
    offset = offset or int(side.get("offset", 0))
    if not shape or not dtype:
        raise UserError(
            "raw input needs --raw-shape Z Y X and --raw-dtype (or a "
            f"{p.name}.info / {p.stem}.yaml sidecar)",
            path=p,
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise UserError(f"raw shape must be 3 positive sizes (z, y, x), got {shape}", path=p)
    try:
        dt = np.dtype(str(dtype))
    except TypeError:
        raise UserError(
            f"unsupported dtype {dtype} (supported: {', '.join(SUPPORTED_DTYPES)})", path=p
        ) from None
    if dt.name not in SUPPORTED_DTYPES:
        raise UserError(
            f"unsupported dtype {dt.name} (supported: {', '.join(SUPPORTED_DTYPES)})", path=p
        )
    if str(byte_order).lower() not in ("little", "big", "<", ">"):
        raise UserError(f"byte order must be 'little' or 'big', got {byte_order!r}", path=p)
    dt = dt.newbyteorder("<" if str(byte_order).lower() in ("little", "<") else ">")
    expected = int(np.prod(shape)) * dt.itemsize
    size = p.stat().st_size - offset
    if size != expected:
        raise UserError(
            f"raw file holds {size} bytes but shape {'x'.join(map(str, shape))} "
            f"{dt.name} needs {expected} bytes",
            path=p,
        )
    mm = np.memmap(p, dtype=dt, mode="r", offset=offset, shape=shape)
    return _MemmapSource(p, mm, "raw")
