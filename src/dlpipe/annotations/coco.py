"""COCO instance annotations (JSON + images folder) to an instance dataset Zarr."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.annotations.cvat._raster import polygon_spans
from dlpipe.annotations.images import read_image, refuse_unsafe_name
from dlpipe.annotations.instance_dataset import Layout, import_result, renumber, write_import
from dlpipe.errors import UserError
from dlpipe.results import StageResult

log = logging.getLogger(__name__)


def rle_decode(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    """A COCO RLE (``counts`` as a list, or the compressed string) as a (height, width) bool mask.

    Runs alternate background / object, starting with background, in column-major order.
    """
    counts = rle.get("counts")
    if isinstance(counts, str):
        counts = _rle_string(counts)
    if not isinstance(counts, list):
        raise UserError("COCO RLE without counts")
    total = int(sum(counts))
    if total != height * width:
        raise UserError(f"COCO RLE covers {total} pixels, the image {height}x{width}")
    flat = np.zeros(total, bool)
    ends = np.cumsum(counts)
    starts = ends - np.asarray(counts)
    for s, e in zip(starts[1::2], ends[1::2], strict=True):
        flat[s:e] = True
    return flat.reshape(width, height).T


def _rle_string(s: str) -> list[int]:
    """pycocotools' compressed counts string (6-bit chunks, deltas after the 3rd)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _object_mask(seg: Any, h: int, w: int, where: str) -> np.ndarray:
    if isinstance(seg, dict):
        return rle_decode(seg, h, w)
    if not isinstance(seg, list):
        raise UserError(f"{where}: segmentation must be polygons or an RLE")
    polys = []
    for poly in seg:
        pts = np.asarray(poly, np.float64)
        if pts.ndim != 1 or len(pts) < 6 or len(pts) % 2:
            raise UserError(f"{where}: a polygon needs an even number (>= 6) of coordinates")
        polys.append(pts.reshape(-1, 2))
    mask = np.zeros((h, w), bool)
    if polys:
        _, rows, c0, c1 = polygon_spans(polys, np.zeros(len(polys), np.int64), h, w)
        # the rings of one object share an id: their crossings pair up even-odd per row
        for r, a, b in zip(rows, c0, c1, strict=True):
            mask[r, a:b] = True
    return mask


def read_coco(
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
) -> StageResult:
    """Convert COCO instance annotations to an instance dataset Zarr (``dlpipe cvat`` layout).

    Parameters
    ----------
    annotations : COCO JSON (``images``, ``annotations``, ``categories``); segmentations as
        polygons (pixel (i, j) is inside when its centre (j + 0.5, i + 0.5) is, as for CVAT)
        or RLE (list or compressed counts); ``iscrowd`` objects are skipped (counted)
    images : folder holding the ``file_name`` of every image
    out : the Zarr group to write (atomically; see :func:`write_instance_dataset`)

    Returns
    -------
    dict with ``images``, ``objects``, ``classes``, ``size``, ``padded``, ``skipped_crowd``,
    ``empty_objects`` (objects with no visible pixel, also those fully covered by later ones)

    Raises
    ------
    UserError
        Missing or malformed JSON, an unknown category, a missing image or one whose size
        differs from the JSON.
    """
    annotations, images = Path(annotations), Path(images)
    if not annotations.is_file():
        raise UserError("COCO annotations file not found", path=annotations)
    if not images.is_dir():
        raise UserError("images folder not found", path=images)
    try:
        doc = json.loads(annotations.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"not a JSON file ({exc})", path=annotations) from None
    if not isinstance(doc, dict) or not all(
        k in doc for k in ("images", "annotations", "categories")
    ):
        raise UserError(
            "not COCO instances: needs images, annotations and categories", path=annotations
        )
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: i + 1 for i, c in enumerate(cats)}
    classes = ["background", *(str(c["name"]) for c in cats)]
    if len(classes) > 255:
        raise UserError(f"{len(classes) - 1} categories do not fit in uint8", path=annotations)
    entries = sorted(doc["images"], key=lambda e: e["id"])
    by_image: dict[Any, list[dict]] = {e["id"]: [] for e in entries}
    for a in sorted(doc["annotations"], key=lambda a: a.get("id", 0)):
        if a.get("image_id") not in by_image:
            raise UserError(
                f"annotation {a.get('id')} refers to unknown image {a.get('image_id')}",
                path=annotations,
            )
        if a.get("category_id") not in class_of:
            raise UserError(
                f"annotation {a.get('id')} has unknown category {a.get('category_id')}",
                path=annotations,
            )
        by_image[a["image_id"]].append(a)
    paths = []
    for e in entries:
        refuse_unsafe_name(str(e["file_name"]), what="file_name", path=annotations)
        p = images / e["file_name"]
        if not p.is_file():
            p = images / Path(e["file_name"]).name
        if not p.is_file():
            raise UserError(f"image {e['file_name']!r} of the JSON not found", path=images)
        paths.append(p)
    stats = {"skipped_crowd": 0, "empty_objects": 0}
    first = [read_image(p, bits=(8, 16), grey_rgb=True) for p in paths[:1]]
    colour = any(read_image(p, bits=(8, 16), grey_rgb=True).ndim == 3 for p in paths)
    dtype = first[0].dtype if first else np.uint8

    def frames() -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        for e, p in zip(entries, paths, strict=True):
            img = read_image(p, bits=(8, 16), grey_rgb=True)
            h, w = int(e["height"]), int(e["width"])
            if img.shape[:2] != (h, w):
                raise UserError(
                    f"image {e['file_name']!r} is {img.shape[1]}x{img.shape[0]} "
                    f"but the JSON says {w}x{h}",
                    path=p,
                )
            inst = np.zeros((h, w), np.uint32)
            sem = np.zeros((h, w), np.uint8)
            k = 0
            for a in by_image[e["id"]]:
                if a.get("iscrowd", 0):
                    stats["skipped_crowd"] += 1
                    continue
                m = _object_mask(a.get("segmentation"), h, w, f"annotation {a.get('id')}")
                if not m.any():
                    stats["empty_objects"] += 1
                    continue
                k += 1
                inst[m] = k
                sem[m] = class_of[a["category_id"]]
            inst, n_visible = renumber(inst)
            stats["empty_objects"] += k - n_visible
            yield e["file_name"], img, sem, inst

    sizes = [(int(e["height"]), int(e["width"])) for e in entries]
    layout = Layout(classes, sizes, 3 if colour else 1, dtype)
    summary = write_import(
        out, frames(), layout, stats, source=str(annotations), kind="polygon", overwrite=overwrite
    )
    log.info("import coco: %s", summary)
    return import_result(summary, out)
