"""One folder per image with one mask PNG per object (the DSB2018 layout) to a dataset Zarr."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dlpipe.annotations.images import read_image
from dlpipe.annotations.instance_dataset import Layout, import_result, renumber, write_import
from dlpipe.errors import UserError
from dlpipe.results import StageResult

log = logging.getLogger(__name__)

EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTS and p.is_file())


def read_instance_folders(
    root: str | Path,
    out: str | Path,
    *,
    ids: Sequence[str] | None = None,
    class_name: str = "object",
    rgb: bool = False,
    overwrite: bool = False,
) -> StageResult:
    """Convert the DSB2018 layout to an instance dataset Zarr (``dlpipe cvat`` layout).

    Parameters
    ----------
    root : a folder of samples ``<id>/images/<image>`` + ``<id>/masks/*.png`` (one binary mask
        per object, non-zero = object), or one such sample folder itself
    out : the Zarr group to write (atomically; see :func:`write_instance_dataset`)
    ids : sample folders to take, in this order (default: all, sorted)
    class_name : the one object class (``classes == ["background", class_name]``)
    rgb : store RGB even when every image is grey (to predict with a model trained on RGB)

    Objects are numbered 1..K in the sorted order of their mask files; where masks overlap
    the later one wins (the overlap is counted). Images of different sizes are padded.

    Returns
    -------
    dict with ``images``, ``objects``, ``classes``, ``size``, ``padded``,
    ``overlap_pixels``, ``empty_masks``

    Raises
    ------
    UserError
        Missing root or sample, no image or several in ``images/``, a mask whose size
        differs from its image.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError("instance folders root not found", path=root)
    if (root / "images").is_dir():
        samples = [root]
    else:
        found = sorted(p for p in root.iterdir() if (p / "images").is_dir())
        if ids:
            names = {p.name: p for p in found}
            missing = [i for i in ids if i not in names]
            if missing:
                raise UserError(
                    f"sample {missing[0]!r} not found (no {missing[0]}/images/)", path=root
                )
            found = [names[i] for i in ids]
        samples = found
    if not samples:
        raise UserError("no sample folders (<id>/images/, <id>/masks/) found", path=root)
    image_paths = []
    for s in samples:
        files = _files(s / "images")
        if len(files) != 1:
            raise UserError(
                f"expected one image in {s.name}/images/, found {len(files)}", path=s / "images"
            )
        image_paths.append(files[0])
    heads = [
        read_image(p, bits=(8, 16), grey_rgb=True) for p in image_paths
    ]  # small datasets: read once, keep
    colour = rgb or any(a.ndim == 3 for a in heads)
    dtype = heads[0].dtype
    stats = {"overlap_pixels": 0, "empty_masks": 0}

    def frames() -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        for s, img in zip(samples, heads, strict=True):
            h, w = img.shape[:2]
            inst = np.zeros((h, w), np.uint32)
            k = 0
            masks = _files(s / "masks") if (s / "masks").is_dir() else []
            for mp in masks:
                m = read_image(mp, bits=(8, 16), grey_rgb=True)
                if m.ndim == 3:
                    m = m.max(axis=2)
                if m.shape != (h, w):
                    raise UserError(
                        f"mask is {m.shape[1]}x{m.shape[0]}, its image {w}x{h}", path=mp
                    )
                m = m > 0
                if not m.any():
                    stats["empty_masks"] += 1
                    continue
                k += 1
                stats["overlap_pixels"] += int((inst[m] > 0).sum())
                inst[m] = k
            inst, _ = renumber(inst)
            yield s.name, img, (inst > 0).astype(np.uint8), inst

    layout = Layout(
        ["background", class_name], [a.shape[:2] for a in heads], 3 if colour else 1, dtype
    )
    summary = write_import(
        out, frames(), layout, stats, source=str(root), kind="mask", overwrite=overwrite
    )
    log.info("import instance folders: %s", summary)
    return import_result(summary, out)
