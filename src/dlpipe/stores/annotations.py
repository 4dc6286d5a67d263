"""Annotations placed in a volume: the ``dlpipe.annotations`` record and its held-out slices.

``dlpipe cvat EXPORT --volume VOL.zarr`` writes annotated slices into
``VOL.zarr/labels/annotations/0`` (uint8, :data:`NOT_ANNOTATED` = 255 elsewhere) and records
them in the root attribute ``dlpipe.annotations``::

    {"name": "annotations", "slices": {"z": [4, 12], "y": [80]}, "classes": [...],
     "not_annotated": 255, "source": "...", "test": {"z": [12]}}

:func:`split_slices` decides, from the annotated slices alone, which of them are held out:
the *test* slices (scored by ``dlpipe evaluate``'s annotation score, never trained on) and,
among the rest, the *validation* slices. Training and evaluation call it with the same
slices and get the same test slices, whatever the training settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.stores.volume import dlpipe_attrs

__all__ = [
    "AXES",
    "NOT_ANNOTATED",
    "TEST_FRACTION",
    "SliceSet",
    "SliceView",
    "annotation_record",
    "plane_shape",
    "read_plane",
    "split_by_slabs",
    "split_slices",
    "spread",
    "test_slices",
]

AXES = ("z", "y", "x")
NOT_ANNOTATED = 255
"""Value of ``labels/annotations`` voxels that no annotated slice covers."""
TEST_FRACTION = 0.2
"""Fraction of the annotated slices held out for the annotation score."""

#: annotated slice indices per axis, ``{"z": [4, 12], "y": [80]}``
SliceSet = dict[str, list[int]]


def annotation_record(path: str | Path, name: str = "annotations") -> dict[str, Any] | None:
    """The ``dlpipe.<name>`` record of a volume if it describes placed annotations, else None."""
    record = dlpipe_attrs(path).get(name)
    if isinstance(record, Mapping) and isinstance(record.get("slices"), Mapping):
        return dict(record)
    return None


def plane_shape(shape: Sequence[int], axis: str) -> tuple[int, int]:
    """(rows, columns) of a slice along ``axis`` of a (z, y, x) volume."""
    rest = [int(n) for a, n in zip(AXES, shape, strict=True) if a != axis]
    return rest[0], rest[1]


def read_plane(arr: Any, axis: str, index: int) -> np.ndarray:
    """Slice ``index`` along ``axis`` of a (z, y, x) array as (rows, columns)."""
    if axis == "z":
        return np.asarray(arr[index, :, :])
    if axis == "y":
        return np.asarray(arr[:, index, :])
    return np.asarray(arr[:, :, index])


def spread(n: int, k: int) -> list[int]:
    """``k`` of the positions ``0 .. n-1``, at the centres of ``k`` equal parts.

    >>> spread(10, 2)
    [2, 7]
    >>> spread(5, 1)
    [2]
    """
    return [int((2 * j + 1) * n // (2 * k)) for j in range(k)] if k > 0 else []


def _by_axis(items: Sequence[tuple[str, int]]) -> SliceSet:
    out = {a: sorted(i for ax, i in items if ax == a) for a in AXES}
    return {a: v for a, v in out.items() if v}


def split_slices(
    slices: Mapping[str, Sequence[int]],
    val_fraction: float = 0.2,
    test_fraction: float = TEST_FRACTION,
    *,
    test: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, SliceSet]:
    """Hold out annotated slices: test first, then validation among the rest.

    The N slices are ordered z, y, x, by index. With N >= 2, ``max(1, round(N *
    test_fraction))`` of them, at the centres of equal parts of that order (:func:`spread`),
    are the test slices; with N >= 3, ``max(1, round(N * val_fraction))`` of the others,
    picked the same way, validate; the rest train. One slice only trains. At least one
    slice always trains. ``test`` gives the test slices instead (a record's ``test``).

    Returns
    -------
    ``{"train": {...}, "val": {...}, "test": {...}}``, each {axis: [index, ...]} (axes with
    no slice left out).

    >>> split_slices({"z": [4, 8, 12, 16, 20]})["test"]
    {'z': [12]}
    """
    items = [(a, int(i)) for a in AXES for i in sorted({int(v) for v in slices.get(a, [])})]
    n = len(items)
    if test is not None:
        held = [(a, int(i)) for a in AXES for i in sorted({int(v) for v in test.get(a, [])})]
    else:
        n_test = 0 if n < 2 or test_fraction <= 0 else max(1, round(n * test_fraction))
        held = [items[k] for k in spread(n, min(n_test, n - 1))]
    rest = [it for it in items if it not in held]
    n_val = 0 if n < 3 or val_fraction <= 0 else max(1, round(n * val_fraction))
    n_val = max(0, min(n_val, len(rest) - 1))
    val = [rest[k] for k in spread(len(rest), n_val)]
    train = [it for it in rest if it not in val]
    return {"train": _by_axis(train), "val": _by_axis(val), "test": _by_axis(held)}


def split_by_slabs(
    slices: Mapping[str, Sequence[int]],
    slabs: Mapping[str, Sequence[int]],
    val_fraction: float = 0.2,
) -> dict[str, SliceSet]:
    """Split annotated slices by the z-slabs of a volume that also has dense labels.

    With a dense truth the evaluation scores the test slab (``dlpipe.split.test``), so no
    annotated slice in it may train: the z-slices in the test slab are the test slices,
    those in the val slab validate. Without a slice in the val slab, the last
    ``round(N * val_fraction)`` of the N others (ordered z, y, x, by index) validate, as
    the last images of a stacked CVAT dataset do (``dlpipe cvat --out``); at least one
    trains. A y- or x-slice crosses every slab: it trains (its voxels in the test slab
    too; the caller warns).

    >>> split_by_slabs({"z": [3, 7, 11, 16, 20, 44]}, {"val": [30, 40], "test": [40, 50]})
    {'train': {'z': [3, 7, 11, 16]}, 'val': {'z': [20]}, 'test': {'z': [44]}}
    """

    def inside(part: str, z: int) -> bool:
        lo, hi = (int(v) for v in (slabs.get(part) or (0, 0)))
        return lo <= z < hi

    items = [(a, int(i)) for a in AXES for i in sorted({int(v) for v in slices.get(a, [])})]
    test = [it for it in items if it[0] == "z" and inside("test", it[1])]
    val = [it for it in items if it[0] == "z" and inside("val", it[1])]
    rest = [it for it in items if it not in test and it not in val]
    if not val and len(rest) >= 2 and val_fraction > 0:
        n_val = min(len(rest) - 1, round(len(rest) * val_fraction))
        if n_val > 0:
            val, rest = rest[-n_val:], rest[:-n_val]
    return {"train": _by_axis(rest), "val": _by_axis(val), "test": _by_axis(test)}


def test_slices(record: Mapping[str, Any]) -> SliceSet:
    """The test slices of an annotations record: its ``test`` entry, else
    :func:`split_slices` of its slices."""
    if isinstance(record.get("test"), Mapping):
        return {a: [int(i) for i in v] for a, v in record["test"].items() if v}
    return split_slices(record["slices"])["test"]


test_slices.__test__ = False  # not a pytest test


class SliceView:
    """Read-only view of a (Z, Y, X) label array in which only the voxels of chosen slices
    keep their value; every other voxel reads as ``ignore_index``.

    A voxel keeps its value when it lies on a slice of ``keep`` and on no slice of
    ``drop`` (so the line where a training slice crosses a held-out one is held out too).

    Parameters
    ----------
    labels : (Z, Y, X) array (``labels/annotations/0``)
    keep, drop : slice indices per axis, ``{"z": [4, 12], "y": [80]}``
    ignore_index : the value of the other voxels

    Supports integer and step-1 slice indexing on each axis (what training reads).
    """

    def __init__(
        self,
        labels: Any,
        keep: Mapping[str, Sequence[int]],
        drop: Mapping[str, Sequence[int]] | None = None,
        ignore_index: int = NOT_ANNOTATED,
    ) -> None:
        self.labels = labels
        self.shape, self.dtype, self.ndim = tuple(labels.shape), labels.dtype, labels.ndim
        self.chunks = tuple(getattr(labels, "chunks", labels.shape))
        self.keep = {a: np.array(sorted(v), dtype=np.int64) for a, v in keep.items() if v}
        self.drop = {a: np.array(sorted(v), dtype=np.int64) for a, v in (drop or {}).items() if v}
        self.ignore_index = int(ignore_index)

    def _hits(self, sets: Mapping[str, np.ndarray], coords: list[np.ndarray]) -> np.ndarray:
        out = np.zeros(tuple(len(c) for c in coords), dtype=bool)
        for i, axis in enumerate(AXES):
            if axis in sets:
                shape = [1, 1, 1]
                shape[i] = -1
                out |= np.isin(coords[i], sets[axis]).reshape(shape)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        out = np.array(self.labels[key])
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        coords, scalar = [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, (int, np.integer)):
                coords.append(np.array([int(k) % n]))
                scalar.append(True)
            elif isinstance(k, slice) and k.step in (None, 1):
                coords.append(np.arange(*k.indices(n)))
                scalar.append(False)
            else:
                raise TypeError(f"unsupported index {k!r}")
        kept = self._hits(self.keep, coords) & ~self._hits(self.drop, coords)
        out[~kept.reshape(out.shape)] = self.ignore_index
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
