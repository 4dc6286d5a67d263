"""CVAT annotations of slices back into the volume they came from.

``dlpipe cvat EXPORT --volume VOL.zarr`` rasterises each annotated image (the rasteriser
of ``dlpipe cvat``) and writes it at its slice of ``VOL.zarr/labels/annotations/0``
(uint8, :data:`NOT_ANNOTATED` = 255 elsewhere). The slice of an image comes from the
manifest ``slices.json`` of ``dlpipe slices`` or from its name (``<stem>_z0012.png``,
``_y0080``, ``_x0100``, the demo's ``slice_0012.png`` = z 12). The annotated slices per
axis go to the root attribute ``dlpipe.annotations``.

Everything is read and checked before anything is written; bad input (a name that gives no
slice, an image of the wrong size, two images that disagree where they cross, a label not
among the classes) raises :class:`~dlpipe.errors.UserError` and leaves the volume as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from dlpipe.annotations.cvat._model import AREA_KINDS
from dlpipe.annotations.cvat._sources import open_annotations
from dlpipe.annotations.cvat.convert import class_table
from dlpipe.annotations.cvat.rasterise import rasterise_frame
from dlpipe.annotations.cvat.reader import CvatReader
from dlpipe.annotations.slices import (
    AXES,
    MANIFEST,
    SlicePlan,
    iter_positions,
    read_manifest,
    store_classes,
)
from dlpipe.errors import UserError
from dlpipe.stores import ngff
from dlpipe.stores.annotations import NOT_ANNOTATED, split_slices
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.volume import open_volume

__all__ = ["NOT_ANNOTATED", "place_annotations"]

log = logging.getLogger(__name__)


def _slice_shape(shape: Sequence[int], axis: str) -> tuple[int, int]:
    """(height, width) of the image of a slice along ``axis``."""
    rest = [int(s) for a, s in zip(AXES, shape, strict=True) if a != axis]
    return rest[0], rest[1]


def _classes(
    given: Sequence[str] | None, volume: Path, existing: Mapping[str, Any], xml_labels: list[str]
) -> list[str]:
    """Class names by value (0 the background): given, the volume's, else the XML's."""
    if given:
        return ["background", *given]
    for names in (existing.get("classes"), store_classes(volume)):
        if names:
            return [str(n) for n in names]
    return ["background", *xml_labels]


def _where(pos: SlicePlan) -> str:
    return f"{pos[0]} {pos[1]}"


def _check_crossings(placed: Mapping[SlicePlan, tuple[str, np.ndarray]]) -> None:
    """Two images of crossing slices must agree on every voxel they share."""
    items = sorted(placed.items())
    for k, ((pa, ia), (name_a, a)) in enumerate(items):
        for (pb, ib), (name_b, b) in items[k + 1 :]:
            if pa == pb:
                continue
            rest_a = [x for x in AXES if x != pa]
            rest_b = [x for x in AXES if x != pb]
            line_a = np.take(a, ib, axis=rest_a.index(pb))
            line_b = np.take(b, ia, axis=rest_b.index(pa))
            n = int(np.count_nonzero(line_a != line_b))
            if n:
                raise UserError(
                    f"images {name_a!r} ({_where((pa, ia))}) and {name_b!r} "
                    f"({_where((pb, ib))}) disagree on {n} voxels where they cross"
                )


def _read(
    annotations: Path,
    shape: Sequence[int],
    positions: Mapping[str, SlicePlan],
    class_names: list[str] | None,
    volume: Path,
    existing: Mapping[str, Any],
    *,
    empty: str,
    lenient: bool,
) -> tuple[dict[SlicePlan, tuple[str, np.ndarray]], list[str], int]:
    """Rasterise every annotated image at its slice; check names, sizes and duplicates."""
    placed: dict[SlicePlan, tuple[str, np.ndarray]] = {}
    skipped = 0
    classes: list[str] = []
    class_of: dict[str, int | None] = {}
    with open_annotations(annotations) as (stream, _zf):
        reader = CvatReader(stream, name=str(annotations), lenient=lenient)
        for frame in tqdm(reader.frames(), desc="cvat", unit="image", disable=None):
            if not classes:
                classes = _classes(class_names, volume, existing, list(reader.meta.labels))
                class_of = class_table(classes[1:], {})
                class_of[classes[0]] = None  # the background label paints nothing
            (pos,) = iter_positions([frame.name], positions)
            axis, index = pos
            n = int(shape[AXES.index(axis)])
            if not 0 <= index < n:
                raise UserError(
                    f"image {frame.name!r}: {axis}-slice {index} is outside the volume (0..{n - 1})"
                )
            h, w = _slice_shape(shape, axis)
            if (frame.height, frame.width) != (h, w):
                raise UserError(
                    f"image {frame.name!r} is {frame.width}x{frame.height} but {axis}-slice "
                    f"{index} of the volume is {w}x{h}"
                )
            if empty == "skip" and not any(s.kind in AREA_KINDS for s in frame.shapes):
                skipped += 1
                continue
            sem, _, _ = rasterise_frame(frame, class_of, h, w, unknown="error")
            if pos in placed:
                other, prev = placed[pos]
                if not np.array_equal(prev, sem):
                    raise UserError(
                        f"images {other!r} and {frame.name!r} are both {_where(pos)} and disagree"
                    )
                continue
            placed[pos] = (frame.name, sem)
    return placed, classes, skipped


def place_annotations(
    annotations: str | Path,
    volume: str | Path,
    *,
    manifest: str | Path | None = None,
    classes: Sequence[str] | None = None,
    labels_name: str = "annotations",
    empty: str = "auto",
    lenient: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the annotated images of a CVAT export into ``VOL.zarr/labels/<labels_name>``.

    Parameters
    ----------
    annotations : ``annotations.xml`` or CVAT's export ``.zip`` (images are not needed)
    volume : ``VOL.zarr`` of ``dlpipe tile``, the volume the slices were taken from
    manifest : ``slices.json`` of ``dlpipe slices``; default the one beside
        ``annotations`` if there is one, else positions come from the image names
    classes : class names of values 1, 2, ... (as ``cvat.classes``); default the
        volume's (``dlpipe.annotations.classes``, ``dlpipe.classes`` or label properties,
        value 0 the background), else the XML's labels in order
    labels_name : the label image to write
    empty : an image without shapes is ``"skip"``: not annotated (CVAT exports every
        image of a task, annotated or not), or ``"background"``: annotated, all
        background; ``"auto"`` (default): ``"background"`` when the manifest says its
        images came with predicted labels (``dlpipe slices --labels``: an image left
        without shapes was predicted all background), else ``"skip"``
    lenient : pad short mask RLEs
    overwrite : replace an existing ``labels/<labels_name>``

    Returns
    -------
    dict with ``slices`` ({axis: [index, ...]}), ``images`` (placed), ``skipped_empty``,
    ``classes`` and ``labels`` (the label image's path).
    """
    if empty not in ("auto", "skip", "background"):
        raise UserError(f"empty images: {empty!r} is not 'auto', 'skip' or 'background'")
    annotations = Path(annotations)
    vol = open_volume(volume)
    shape = tuple(int(s) for s in vol.image.shape)
    if manifest is None and (annotations.parent / MANIFEST).is_file():
        manifest = annotations.parent / MANIFEST
    positions = read_manifest(manifest) if manifest is not None else {}
    if empty == "auto":
        empty = "background" if manifest is not None and _prelabelled(manifest) else "skip"
    target = vol.path / "labels" / labels_name
    if target.exists() and not overwrite:
        raise UserError("annotations exist in the volume (use --overwrite)", path=target)
    existing = vol.attrs.get(labels_name) or {}
    placed, names, skipped = _read(
        annotations,
        shape,
        positions,
        classes,
        vol.path,
        existing if isinstance(existing, Mapping) else {},
        empty=empty,
        lenient=lenient,
    )
    if not placed:
        raise UserError("the export holds no annotated image", path=annotations)
    _check_crossings(placed)
    slices = {a: sorted(i for (ax, i) in placed if ax == a) for a in AXES}
    slices = {a: v for a, v in slices.items() if v}
    _write(vol, labels_name, shape, placed, names, overwrite=overwrite)
    _record(vol.path, labels_name, slices, names, annotations)
    log.debug("cvat: placed %d slices %s in %s", len(placed), slices, target)
    return {
        "slices": slices,
        "images": len(placed),
        "skipped_empty": skipped,
        "classes": names,
        "labels": target,
    }


def _prelabelled(manifest: str | Path) -> bool:
    """Whether the manifest's images went to CVAT with predicted labels."""
    return "labels" in json.loads(Path(manifest).read_text())


def _write(
    vol: Any,
    name: str,
    shape: tuple[int, ...],
    placed: Mapping[SlicePlan, tuple[str, np.ndarray]],
    classes: list[str],
    *,
    overwrite: bool,
) -> None:
    """``labels/<name>/0`` (255 everywhere, the slices placed), written whole, then renamed."""
    root = zarr.open_group(str(vol.path), mode="r+")
    fmt = root.metadata.zarr_format
    version = "0.5" if "ome" in root.attrs else "0.4"
    labels = root.require_group("labels")
    chunks = tuple(min(int(c), s) for c, s in zip(vol.image.chunks, shape, strict=True))
    size = vol.voxel_size or [1.0, 1.0, 1.0]
    with atomic_path(vol.path / "labels" / name, overwrite=overwrite) as tmp:
        grp = zarr.open_group(str(tmp), mode="w", zarr_format=fmt)
        grp.attrs.update(
            ngff.label_image_attrs(
                name, 1, size, vol.unit, version, classes=classes, title="placed slices"
            )
        )
        arr = grp.create_array(
            "0", shape=shape, chunks=chunks, dtype="uint8", fill_value=NOT_ANNOTATED
        )
        for (axis, index), (_, sem) in placed.items():
            if axis == "z":
                arr[index, :, :] = sem
            elif axis == "y":
                arr[:, index, :] = sem
            else:
                arr[:, :, index] = sem
    group_attrs = dict(labels.attrs)
    listed = list(group_attrs.get("ome", group_attrs).get("labels") or [])
    if name not in listed:
        labels.attrs.update(ngff.labels_group_attrs([*listed, name], version))


def _record(
    path: Path,
    name: str,
    slices: Mapping[str, list[int]],
    classes: list[str],
    source: Path,
) -> None:
    """The annotated slices per axis in the root attribute ``dlpipe.<name>``."""
    root = zarr.open_group(str(path), mode="r+")
    attrs = dict(root.attrs.get("dlpipe", {}))
    attrs[name] = {
        "name": name,
        "slices": {a: list(v) for a, v in slices.items()},
        "classes": list(classes),
        "not_annotated": NOT_ANNOTATED,
        "source": str(source.resolve()),
        "test": split_slices(slices)["test"],  # held out for the annotation score
    }
    root.attrs["dlpipe"] = attrs
