"""Multi-page TIFF / BigTIFF volumes, refused when cut short."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.volumes.readers.base import MemmapSource, Source

__all__ = ["open_tiff"]


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


def open_tiff(p: Path) -> Source:
    """The first series of TIFF ``p``, memory-mapped when contiguous and uncompressed."""
    import tifffile  # heavy optional import: only when reading TIFF

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
            return MemmapSource(p, mm.reshape(shape), "tiff")
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
