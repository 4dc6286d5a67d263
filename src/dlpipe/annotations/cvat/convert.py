"""CVAT export -> one Zarr group (images, semantic, instances) plus a table of objects."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from dlpipe.annotations.cvat import _background
from dlpipe.annotations.cvat._sources import ImageSource, open_annotations, video_index
from dlpipe.annotations.cvat.rasterise import DrawOptions, rasterise_frame
from dlpipe.annotations.cvat.reader import CvatReader
from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.results import StageResult
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.dataset import PIXEL_CONVENTION, DatasetWriter, finish_dataset
from dlpipe.stores.table import ObjectsTable

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = defaults()["cvat"]
"""The ``cvat`` section's defaults, from the config schema (the one source of defaults)."""


def class_table(
    classes: Sequence[str], label_map: Mapping[str, str | None]
) -> dict[str, int | None]:
    """label -> class id (1-based), or None to drop that label's shapes."""
    table: dict[str, int | None] = {name: i + 1 for i, name in enumerate(classes)}
    for label, target in label_map.items():
        if target is None:
            table[label] = None
        elif target not in table or table[target] is None:
            raise UserError(
                f"cvat.label_map maps {label!r} to {target!r}, which is not a class "
                f"({', '.join(classes)})"
            )
        else:
            table[label] = table[target]
    return table


def _fit(a: np.ndarray, h: int, w: int, policy: str, name: str) -> np.ndarray:
    ah, aw = a.shape[:2]
    if (ah, aw) == (h, w):
        return a
    grow, shrink = (ah < h or aw < w), (ah > h or aw > w)
    if policy == "error" or (grow and policy == "crop") or (shrink and policy == "pad"):
        raise UserError(
            f"image {name!r} is {aw}x{ah} but the dataset is {w}x{h} (all images must share "
            f"one size; cvat.size_mismatch: pad, crop or pad_crop to fit)"
        )
    out = np.zeros((h, w, *a.shape[2:]), a.dtype)
    hh, ww = min(h, ah), min(w, aw)
    out[:hh, :ww] = a[:hh, :ww]
    return out


def convert(
    annotations: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> StageResult:
    """Convert a CVAT XML (or export zip) to a Zarr dataset for U-Net and Mask R-CNN.

    Writes ``out`` (a Zarr v3 group) only when the whole conversion succeeds:
    ``images`` (N, H, W[, C]) as read, ``semantic`` (N, H, W) uint8 (0 background,
    class i is ``classes[i]``), ``instances`` (N, H, W) uint32 (0 background, 1..K per
    image), in the order of the XML's image ids; attributes ``classes`` (with
    ``classes[0] == "background"``), ``image_names``, ``image_ids``, ``subsets``,
    ``counts``; ``out/objects.parquet`` (or ``.csv``, ``params['table']``), one row per
    object and per tag; and the marker
    completion marker last.

    Parameters
    ----------
    annotations : ``annotations.xml`` or CVAT's export ``.zip``
    out : the Zarr group to write
    images : folder of images (optional for a zip that holds them)
    params : the ``cvat`` config section (see :data:`DEFAULTS`)
    overwrite : replace ``out`` if it exists

    Returns
    -------
    dict with ``images``, ``objects_per_label``, ``counts`` (skipped, clipped, ...),
    ``classes`` and ``seconds``.
    """
    p = DEFAULTS | dict(params or {})
    t0 = time.perf_counter()
    annotations, out = Path(annotations), Path(out)
    if images is not None and not Path(images).exists():
        raise UserError("images folder (or video file) not found", path=images)
    draw = DrawOptions(float(p["polyline_width"]), float(p["points_radius"]))
    with (
        open_annotations(annotations) as (stream, zf),
        atomic_path(out, overwrite=overwrite) as tmp,
        contextlib.closing(ImageSource(Path(images) if images else None, zf)) as source,
    ):
        reader: CvatReader | _background.BackgroundReader
        if _xml_bytes(annotations, zf) >= _background.MIN_BYTES:  # parse on a second core
            reader = _background.BackgroundReader(
                annotations, name=str(annotations), lenient=bool(p["lenient"])
            )
        else:
            reader = CvatReader(stream, name=str(annotations), lenient=bool(p["lenient"]))
        read_images = bool(p["read_images"])
        if read_images and not source.available:
            raise UserError(
                "no images: give --images DIR, an export zip with images, or --no-images",
                path=annotations,
            )
        tmp.mkdir()
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        counts = reader.counts
        classes: list[str] | None = None
        class_of: dict[str, int | None] = {}
        size = tuple(p["size"]) if p["size"] else None
        writer: DatasetWriter | None = None
        names, ids, subsets = [], [], []
        per_label: dict[str, int] = {}
        image_kind = None
        table = ObjectsTable(tmp, str(p["table"]))
        with contextlib.closing(table):
            for frame in tqdm(reader.frames(), desc="cvat", unit="image", disable=None):
                if classes is None:
                    classes = list(p["classes"]) or list(reader.meta.labels)
                    if len(classes) > 254:
                        raise UserError(f"{len(classes)} classes do not fit in uint8")
                    class_of = class_table(classes, p["label_map"])
                img = None
                if read_images:
                    where = source.find(frame.name, frame.subset)  # frame images first
                    video = source.find_video() if where is None else None
                    if video is not None:
                        img = video.read(video_index(frame.name, frame.id))
                    elif where is None:
                        if p["skip_missing"]:
                            counts.missing_images += 1
                            continue
                        raise UserError(
                            f"image {frame.name!r} of the XML not found (--skip-missing skips it)",
                            path=images or annotations,
                        )
                    else:
                        img = source.read(where)
                    if img.shape[:2] != (frame.height, frame.width):
                        raise UserError(
                            f"image {frame.name!r} is {img.shape[1]}x{img.shape[0]} but the "
                            f"XML says {frame.width}x{frame.height}"
                        )
                if size is None:
                    size = (frame.height, frame.width)
                h, w = size
                if (frame.height, frame.width) != (h, w):
                    _fit(
                        np.zeros((frame.height, frame.width), np.uint8),
                        h,
                        w,
                        p["size_mismatch"],
                        frame.name,
                    )
                sem, inst, objects = rasterise_frame(
                    frame, class_of, h, w, counts=counts, draw=draw, unknown=p["unknown_label"]
                )
                if writer is None:
                    writer = DatasetWriter(group, h, w, int(p["chunk"]))
                arrays = {"semantic": sem, "instances": inst}
                if img is not None:
                    img = _fit(img, h, w, p["size_mismatch"], frame.name)
                    kind = (img.shape[2:], img.dtype)
                    if image_kind is None:
                        image_kind = kind
                    elif kind != image_kind:
                        raise UserError(
                            f"image {frame.name!r} is {img.dtype} with shape {img.shape}, "
                            "unlike the first image (all images must share channels and dtype)"
                        )
                    arrays["images"] = img
                index = len(names)
                writer.add(**arrays)
                names.append(frame.name)
                ids.append(frame.id)
                subsets.append(frame.subset)
                for obj in objects:
                    if obj["instance_id"]:
                        per_label[obj["label"]] = per_label.get(obj["label"], 0) + 1
                    obj.update(image=index, image_name=frame.name, subset=frame.subset)
                table.add(objects)
        if writer is None:
            raise UserError("the export holds no (readable) images", path=annotations)
        order = np.argsort(np.array(ids), kind="stable")
        permuted = not np.array_equal(order, np.arange(len(ids)))
        writer.finish(order if permuted else None)
        if permuted:
            new_of_old = np.empty(len(order), np.int64)
            new_of_old[order] = np.arange(len(order))
            table.renumber(new_of_old)
            names = [names[i] for i in order]
            ids = [ids[i] for i in order]
            subsets = [subsets[i] for i in order]
        seconds = time.perf_counter() - t0
        summary = {
            "images": len(names),
            "classes": ["background", *(classes or [])],
            "objects_per_label": per_label,
            "counts": counts.as_metrics(),
            "seconds": seconds,
        }
        attrs = {
            "classes": summary["classes"],
            "image_names": names,
            "image_ids": [int(i) for i in ids],
            "subsets": subsets,
            "objects_table": table.path.name,
            "counts": summary["counts"],
            "objects_per_label": per_label,
            "pixel_convention": PIXEL_CONVENTION,
            "source": str(annotations),
        }
        finish_dataset(tmp, group, attrs)
    log.info(
        "cvat: %d images, %s objects, counts %s, %.1f s",
        len(names),
        per_label,
        {k: v for k, v in summary["counts"].items() if v},
        seconds,
    )
    return StageResult(
        summary,
        metrics={"images": summary["images"], "seconds": summary["seconds"]}
        | {_metric(f"objects_{k}"): v for k, v in summary["objects_per_label"].items()}
        | summary["counts"],
        dicts={"cvat_summary.json": summary},
        summary=f"converted {summary['images']} images, "
        f"{sum(per_label.values())} objects ({len(summary['classes'])} classes): {out}",
    )


def _metric(name: str) -> str:
    """An MLflow-safe metric name (labels may hold any character)."""
    return re.sub(r"[^\w\-. /]", "_", name)


def _xml_bytes(annotations: Path, zf: Any) -> int:
    """Size of the XML: the file, or the largest .xml member of the export zip."""
    if zf is None:
        return annotations.stat().st_size
    return max(
        (i.file_size for i in zf.infolist() if i.filename.lower().endswith(".xml")), default=0
    )
