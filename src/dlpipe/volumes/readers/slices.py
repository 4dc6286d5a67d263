"""Folders of 2D slice images (TIFF or PNG), stacked in natural sort order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.volumes.readers.base import Source

__all__ = ["SLICE_SUFFIXES", "natural_key", "open_slices"]

SLICE_SUFFIXES = (".tif", ".tiff", ".png")


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


def natural_key(name: str) -> list[Any]:
    """Sort key putting ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _read_slice(f: Path) -> np.ndarray:
    try:
        if f.suffix.lower() in (".tif", ".tiff"):
            import tifffile  # heavy optional import: only for TIFF slices

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
            import tifffile  # heavy optional import: only for TIFF slices

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


def open_slices(p: Path) -> Source:
    """The folder ``p`` of 2D slices; every slice must match the first in shape and dtype."""
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
