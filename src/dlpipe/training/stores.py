"""Reading the Zarr inputs of training.

Two inputs are understood:

* a tiled volume (``dlpipe tile``): ``VOL.zarr/0`` image (z, y, x), ``VOL.zarr/labels/<name>/0``
  uint8 labels, root attribute ``dlpipe`` with ``statistics`` and ``split``, and the completion
  marker (:mod:`dlpipe.stores.marker`);
* a CVAT dataset (``dlpipe cvat``): arrays ``images`` (N, H, W[, C]) and ``semantic``
  (N, H, W uint8), attribute ``classes``. Its N images are treated as z-slices; the last
  ``val_fraction`` of them validate;
* a tiled volume with annotations placed in it (``dlpipe cvat EXPORT --volume``):
  ``labels/annotations/0`` (255 = not annotated) and the record ``dlpipe.annotations``
  (:mod:`dlpipe.stores.annotations`). Its annotated slices, not z-slabs, are split into
  training, validation and test slices; the image around them is the real scan.

:func:`dlpipe.training.labelled.write_labelled_volume` writes the first layout; it and the
sparse-label helpers are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe.errors import UserError
from dlpipe.labels import IGNORE_INDEX
from dlpipe.stores.annotations import (
    AXES,
    SliceView,
    annotation_record,
    split_by_slabs,
    split_slices,
    test_slices,
)
from dlpipe.stores.channels import ChannelView, to_channels
from dlpipe.stores.chunks import CheckedArray, check_missing_chunks
from dlpipe.stores.dataset import Dataset, is_dataset, open_dataset, open_store
from dlpipe.stores.volume import dlpipe_attrs, open_volume
from dlpipe.training.labelled import (
    sparse_labels,
    sparse_labels_from_demo,
    statistics,
    write_labelled_volume,
)

log = logging.getLogger(__name__)

__all__ = [
    "KeptSlices",
    "TrainingSource",
    "evenly_spaced",
    "label_classes",
    "open_source",
    "sparse_labels",
    "sparse_labels_from_demo",
    "statistics",
    "write_labelled_volume",
]


@dataclass
class TrainingSource:
    """Where the image and labels of a training run live.

    Attributes
    ----------
    path : the Zarr store
    image_key, label_key : array paths inside the store (``"0"``, ``"labels/phases/0"``)
    shape : (Z, Y, X) of the image
    train, val : half-open z ranges
    p0_1, p99_9 : normalisation percentiles, x ↦ (x − p0_1) / (p99_9 − p0_1)
    classes : class names; class index i is ``classes[i]``
    kind : ``"volume"``, ``"cvat"`` or ``"annotations"`` (``extra["split"]``: the train,
        val and test slices per axis; ``extra["axes"]``: the axes trained on)
    """

    path: Path
    image_key: str
    label_key: str
    shape: tuple[int, int, int]
    train: tuple[int, int]
    val: tuple[int, int]
    p0_1: float
    p99_9: float
    classes: list[str]
    kind: str = "volume"
    extra: dict[str, Any] = field(default_factory=dict)

    def open(self, part: str = "train") -> tuple[Any, Any]:
        """The (image, labels) Zarr arrays, opened read-only.

        With ``extra["keep"]`` (set by ``open_source(max_images=N)``) the labels of the
        training slices not kept read as the ignore index. For annotations, the labels
        of the slices of ``part`` (``"train"`` or ``"val"``) on the trained axes only
        (:class:`~dlpipe.stores.annotations.SliceView`; held-out slices never read as
        training labels).
        """
        group = zarr.open_group(str(self.path), mode="r")
        # reads of a damaged chunk raise one UserError naming the array and chunk key
        image = CheckedArray(group[self.image_key], self.path)
        if image.ndim == 4:  # a CVAT dataset of colour images: their luminance (one channel)
            image = ChannelView(image, 1)
        labels = CheckedArray(group[self.label_key], self.path)
        if self.kind == "annotations":
            split, axes = self.extra["split"], self.extra["axes"]
            keep = {a: v for a, v in split[part].items() if a in axes}
            drop = {
                a: sorted({*split["val"].get(a, []), *split["test"].get(a, [])})
                if part == "train"
                else split["test"].get(a, [])
                for a in AXES
            }
            return image, SliceView(labels, keep, drop, self.extra["ignore_index"])
        if "keep" in self.extra:
            labels = KeptSlices(labels, self.train, self.extra["keep"], self.extra["ignore_index"])
        return image, labels


class KeptSlices:
    """Read-only view of a (Z, Y, X) label array in which the slices of ``z_range`` that are
    not in ``keep`` read as ``ignore_index`` (fewer annotated training slices).

    Supports the indexing that training uses: ``labels[z]``, ``labels[z0:z1]`` and
    ``labels[z0:z1, y0:y1, x0:x1]`` (integer or step-1 slice along z).
    """

    def __init__(
        self, labels: Any, z_range: tuple[int, int], keep: Sequence[int], ignore_index: int
    ) -> None:
        self.labels = labels
        self.shape, self.dtype, self.ndim = tuple(labels.shape), labels.dtype, labels.ndim
        self.chunks = tuple(getattr(labels, "chunks", labels.shape))
        kept = {int(z) for z in keep}
        self.dropped = {z for z in range(z_range[0], z_range[1]) if z not in kept}
        self.ignore_index = ignore_index

    def __getitem__(self, key: Any) -> np.ndarray:
        out = np.array(self.labels[key])
        zkey = key[0] if isinstance(key, tuple) else key
        if isinstance(zkey, (int, np.integer)):
            z = int(zkey) % self.shape[0]
            if z in self.dropped:
                out[...] = self.ignore_index
            return out
        if not isinstance(zkey, slice):
            raise TypeError(f"unsupported z index {zkey!r}")
        zs = range(*zkey.indices(self.shape[0]))
        for i, z in enumerate(zs):
            if z in self.dropped:
                out[i] = self.ignore_index
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def evenly_spaced(candidates: Sequence[int], n: int) -> list[int]:
    """``n`` of ``candidates`` (sorted), evenly spread from the first to the last, nested.

    The first and the last come first; each next one is the candidate farthest (in rank)
    from those already taken (a tie: the later one). So ``evenly_spaced(c, 2)``
    is within ``evenly_spaced(c, 4)``, which is within ``evenly_spaced(c, 8)``: a learning curve
    over the number of annotated slices adds slices, it never swaps them. ``n == 1``: the
    middle one.

    >>> evenly_spaced([0, 1, 2, 3, 4, 5, 6, 7], 3)
    [0, 4, 7]
    >>> evenly_spaced(range(20), 4), evenly_spaced(range(20), 8)
    ([0, 5, 10, 19], [0, 5, 8, 10, 13, 15, 17, 19])
    """
    cand = sorted(int(c) for c in candidates)
    if n >= len(cand):
        return cand
    if n <= 0:
        return []
    if n == 1:
        return [cand[len(cand) // 2]]
    taken = [0, len(cand) - 1]
    while len(taken) < n:
        gap = [min(abs(k - t) for t in taken) for k in range(len(cand))]
        best = max(gap)
        taken.append(max(k for k, g in enumerate(gap) if g == best))
    return [cand[k] for k in sorted(taken)]


def _keep_images(source: TrainingSource, max_images: int, ignore_index: int) -> TrainingSource:
    """Keep ``max_images`` evenly spaced annotated slices (images) of the training range."""
    _, labels = source.open()
    t0, t1 = source.train
    annotated = [z for z in range(t0, t1) if bool((np.asarray(labels[z]) != ignore_index).any())]
    if max_images > len(annotated):
        raise UserError(
            f"train.max_images is {max_images} but the training range z {[t0, t1]} has only "
            f"{len(annotated)} annotated images",
            path=source.path,
        )
    keep = evenly_spaced(annotated, max_images)
    log.info("train: %d of %d annotated training images kept: %s", len(keep), len(annotated), keep)
    source.extra.update(keep=keep, ignore_index=ignore_index, annotated=len(annotated))
    return source


def open_source(
    path: str | Path,
    *,
    labels: str = "phases",
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    max_images: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    strict: bool = False,
    axes: Sequence[str] | None = None,
) -> TrainingSource:
    """Inspect a training store (volume or CVAT dataset) and check it is complete.

    Chunks absent from a volume's image or labels are refused, or with ``strict=False``
    only warned about where the store may leave all-fill chunks out
    (:func:`dlpipe.stores.chunks.check_missing_chunks`).

    ``max_images`` keeps that many evenly spaced annotated images (z-slices with a labelled
    voxel) of the training range; the labels of the others read as ``ignore_index``.

    A volume whose label image ``labels`` has a ``dlpipe.<labels>`` annotations record, or
    that has no label image ``labels`` but placed annotations, trains on its annotated
    slices (kind ``"annotations"``): ``val_fraction`` of them validate, the test slices of
    :func:`~dlpipe.stores.annotations.split_slices` are held out, ``axes`` (default every
    annotated axis) choose the slices' planes to train on.

    Raises
    ------
    UserError
        The store is missing, incomplete, lacks labels or statistics, or its split is empty.
    """
    path = Path(path)
    _, keys = open_store(path, missing="training data not found")
    if is_dataset(keys):
        source = _cvat_source(open_dataset(path, complete=False), classes, val_fraction)
    else:
        record = annotation_record(path, labels)
        if record is None and not (path / "labels" / labels).exists():
            record = annotation_record(path)
            labels = "annotations" if record is not None else labels
        if record is not None:
            source = _annotation_source(
                path, labels, record, classes, val_fraction, axes, ignore_index
            )
            if max_images is not None:
                source = _keep_slices(source, int(max_images))
            return source
        source = _volume_source(path, labels, classes, strict)
    if max_images is not None:
        source = _keep_images(source, int(max_images), ignore_index)
    return source


def _volume_source(
    path: Path, labels: str, classes: Sequence[str] | None, strict: bool = False
) -> TrainingSource:
    vol = open_volume(path, labels=labels, what="volume store", hint="")
    label_key = f"labels/{labels}/0"
    if vol.labels is None:
        raise UserError(f"no label array '{label_key}' in the volume store", path=path)
    for arr in (vol.image, vol.labels):
        check_missing_chunks(arr, path, strict=strict)
    image, lab = vol.image, vol.labels
    if image.ndim != 3 or tuple(lab.shape) != tuple(image.shape):
        raise UserError(
            f"image {tuple(image.shape)} and labels {tuple(lab.shape)} must both be (z, y, x) "
            "of the same shape",
            path=path,
        )
    stats = vol.attrs.get("statistics") or {}
    if "p0_1" not in stats or "p99_9" not in stats:
        raise UserError("no dlpipe.statistics (p0_1, p99_9) in the store attributes", path=path)
    split = vol.attrs.get("split") or {}
    nz = image.shape[0]
    train = tuple(split.get("train", (0, nz)))
    val = tuple(split.get("val", (0, 0)))
    names = list(classes) if classes else label_classes(vol.root, labels)
    return TrainingSource(
        path=path,
        image_key="0",
        label_key=label_key,
        shape=tuple(int(s) for s in image.shape),
        train=(int(train[0]), int(train[1])),
        val=(int(val[0]), int(val[1])),
        p0_1=float(stats["p0_1"]),
        p99_9=float(stats["p99_9"]),
        classes=names,
    )


def _truth_name(path: Path, labels: str) -> str | None:
    """The dense label image of a volume (``dlpipe.labels.name``, tiled with ``--labels``)
    besides the placed annotations ``labels``, or None."""
    name = (dlpipe_attrs(path).get("labels") or {}).get("name")
    if name and name != labels and (path / "labels" / str(name)).is_dir():
        return str(name)
    return None


def _annotation_source(
    path: Path,
    labels: str,
    record: dict[str, Any],
    classes: Sequence[str] | None,
    val_fraction: float,
    axes: Sequence[str] | None,
    ignore_index: int,
) -> TrainingSource:
    """A volume with annotations placed in it; the split holds out annotated slices.

    Without dense labels the record's test slices are held out (the annotation score);
    with them (a truth tiled into the volume, scored on its test slab) the volume's
    z-slabs split the annotated slices (:func:`~dlpipe.stores.annotations.split_by_slabs`).
    """
    source = _volume_source(path, labels, classes or record.get("classes"))
    slices = {a: [int(i) for i in v] for a, v in record["slices"].items() if v}
    truth = _truth_name(path, labels)
    if truth is not None:
        slabs = dlpipe_attrs(path).get("split") or {}
        split = split_by_slabs(slices, slabs, val_fraction)
        crossing = {a: v for a, v in slices.items() if a != "z"}
        if crossing and slabs.get("test"):
            log.warning(
                "train: the annotated %s slices cross the test slab z %s of the dense labels "
                "'%s'; their voxels there train too",
                crossing,
                list(slabs["test"]),
                truth,
            )
    else:
        split = split_slices(slices, val_fraction, test=test_slices(record))
    used = [a for a in AXES if a in slices] if not axes else [str(a).lower() for a in axes]
    bad = [a for a in used if a not in AXES]
    if bad:
        raise UserError(f"train.axes: {bad[0]!r} is not one of z, y, x")
    if not any(split["train"].get(a) for a in used):
        raise UserError(
            f"no annotated training slice on the axes {used} (annotated: {slices}, held out "
            f"for validation {split['val']} and test {split['test']})",
            path=path,
        )
    log.info(
        "train: annotated slices: train %s, val %s, test %s (held out%s), axes %s",
        split["train"],
        split["val"],
        split["test"],
        f"; split by the z-slabs of the dense labels '{truth}'" if truth else "",
        used,
    )
    source.kind = "annotations"
    source.extra.update(split=split, axes=used, ignore_index=ignore_index, labels=labels)
    return source


def _keep_slices(source: TrainingSource, max_images: int) -> TrainingSource:
    """Keep ``max_images`` evenly spread training slices of placed annotations (on the
    trained axes, ordered z, y, x; nested: 2 of them are among 4, which are among 8)."""
    split, axes = source.extra["split"], source.extra["axes"]
    items = [(a, int(i)) for a in AXES if a in axes for i in split["train"].get(a, [])]
    if max_images > len(items):
        raise UserError(
            f"train.max_images is {max_images} but only {len(items)} annotated slices train "
            f"({split['train']}; validation {split['val']}, test {split['test']})",
            path=source.path,
        )
    kept = [items[k] for k in evenly_spaced(range(len(items)), max_images)]
    train = {a: [i for ax, i in kept if ax == a] for a in AXES}
    log.info("train: %d of %d annotated training slices kept: %s", len(kept), len(items), kept)
    source.extra["split"] = {**split, "train": {a: v for a, v in train.items() if v}}
    source.extra.update(keep=kept, annotated=len(items))
    return source


def label_classes(group: Any, labels: str) -> list[str]:
    """The class names of a volume's label pyramid ``labels/<labels>``, as training reads them:
    the root's ``dlpipe.classes``, else the pyramid's ``classes`` attribute, else its NGFF
    ``properties`` (a missing value is ``class_<i>``); [] when none says."""
    meta = dict(group.attrs.get("dlpipe", {}))
    if meta.get("classes"):
        return list(meta["classes"])
    try:
        lattrs = dict(group[f"labels/{labels}"].attrs)
    except KeyError:
        lattrs = {}
    if lattrs.get("classes"):
        return list(lattrs["classes"])
    props = (lattrs.get("ome", lattrs).get("image-label") or {}).get("properties") or []
    named = {
        int(p["label-value"]): str(p.get("name", p.get("class", p["label-value"])))
        for p in props
        if "label-value" in p
    }
    if named:
        return [named.get(i, f"class_{i}") for i in range(max(named) + 1)]
    return []  # decided from the label values during the scan


def _cvat_source(
    data: Dataset, classes: Sequence[str] | None, val_fraction: float
) -> TrainingSource:
    path = data.path
    images, sem = data["images"], data["semantic"]
    n = images.shape[0]
    if tuple(images.shape[:3]) != tuple(sem.shape):
        raise UserError(f"images {images.shape} and semantic {sem.shape} differ", path=path)
    if n == 0:
        raise UserError("the CVAT dataset has no images", path=path)
    n_val = min(n - 1, round(n * val_fraction))
    sample = to_channels(np.asarray(images[: min(n, 16)], dtype=np.float32), 1)
    p0, p1 = np.percentile(sample, [0.1, 99.9])
    names = list(classes) if classes else data.classes
    return TrainingSource(
        path=path,
        image_key="images",
        label_key="semantic",
        shape=tuple(int(s) for s in sem.shape),
        train=(0, n - n_val),
        val=(n - n_val, n),
        p0_1=float(p0),
        p99_9=float(p1),
        classes=names,
        kind="cvat",
    )
