"""Image files to arrays, with one channel rule for every annotation reader.

The rule: a trailing alpha channel is dropped (grey + alpha -> grey, RGBA -> RGB), a
single channel is squeezed, and the result is (h, w) grey or (h, w, c) colour. CVAT
exports keep what is stored (any dtype, RGB stays RGB: the images of a task are what the
annotator saw). The dataset importers (COCO, instance folders) ask for more with the
parameters: 8- or 16-bit images only, and RGB whose three channels are equal made grey.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from dlpipe.errors import UserError

__all__ = ["read_image", "refuse_unsafe_name", "unsafe_name"]


def unsafe_name(name: str) -> bool:
    """Whether an image name from an annotation file leaves its folder: an absolute
    path (``/x``, ``C:x``, ``\\x``) or a ``..`` part."""
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def refuse_unsafe_name(
    name: str, *, what: str = "image name", path: str | Path | None = None
) -> str:
    """``name`` if it stays inside its folder (see :func:`unsafe_name`), else a UserError.

    The one check of every annotation reader (CVAT, COCO) before it opens a file that the
    annotation names: a hostile file cannot make dlpipe read outside the images folder.
    """
    if unsafe_name(name):
        raise UserError(f"{what} {name!r} has an absolute path or '..': refused", path=path)
    return name


_DTYPES = {8: np.uint8, 16: np.uint16}


def read_image(
    path: str | Path,
    *,
    zf: zipfile.ZipFile | None = None,
    bits: Sequence[int] | None = None,
    grey_rgb: bool = False,
) -> np.ndarray:
    """An image file as (h, w) grey or (h, w, c) colour, by the module's channel rule.

    Parameters
    ----------
    path : the file, or the name of a member of ``zf``
    zf : the zip that holds it (a CVAT export), or None
    bits : allowed bit depths (``(8, 16)`` for the dataset importers); None allows any
    grey_rgb : make an RGB image whose three channels are equal grey

    Raises
    ------
    UserError
        An unreadable file, a bit depth not in ``bits``, or a shape that is not 2D grey or
        colour.
    """
    import imageio.v3 as iio  # its plugins are loaded on first use: not in the XML parser

    try:
        if zf is None:
            img = iio.imread(path)
        else:
            img = iio.imread(io.BytesIO(zf.read(str(path))), extension=PurePosixPath(path).suffix)
    except Exception as exc:  # a corrupt image is the user's to fix
        raise UserError(f"cannot read image ({exc})", path=path) from None
    img = np.asarray(img)
    if bits is not None and img.dtype not in [np.dtype(_DTYPES[b]) for b in bits]:
        depths = " or ".join(str(b) for b in bits)
        raise UserError(f"images must be {depths} bit, got {img.dtype}", path=path)
    if img.ndim == 3 and img.shape[-1] in (2, 4):  # grey + alpha, RGBA
        img = img[..., :-1]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if (
        grey_rgb
        and img.ndim == 3
        and img.shape[-1] == 3
        and (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))
    ):
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise UserError(f"expected a 2D grey or colour image, got shape {img.shape}", path=path)
    return img
