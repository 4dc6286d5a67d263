"""Instance evaluation of label volumes (z, y, x): 3D objects, read slab by slab.

The inputs are instance label volumes, 0 background: a TIFF, a Zarr array, a label image
``STORE/labels/NAME`` or a store whose ``labels`` group holds one label image named
``instances`` or ``*_instances`` (the synth truth ``VOL.zarr/labels/pores_instances``, an
instance-unet ``PRED.zarr``). Every object is of one class, named after the truth's label
image or file (``pores_instances`` -> ``pores``; ``instances`` -> ``object``).

The overlaps of every predicted with every true object are counted slab by slab (a slab is
the truth's chunk depth, at least 8 slices): memory grows with the number of overlapping
pairs, not with the volume. An object is the whole of its voxels in the z range evaluated
(the test split by default), so the result equals that of the whole volume in memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.evaluation.instances import InstanceEvaluator

__all__ = [
    "PredictedVolume",
    "add_volume",
    "class_name",
    "find_instance_labels",
    "open_instance_volume",
    "volume_overlaps",
]


def find_instance_labels(path: Path, what: str) -> str:
    """The name of the one instance label image of the store ``path``."""
    from dlpipe.stores.instance_labels import instance_label_names

    picks, names = instance_label_names(path)
    if len(picks) == 1:
        return picks[0]
    raise UserError(
        f"{what}: no single instance label image (labels: {', '.join(names) or 'none'}); "
        "give STORE/labels/NAME",
        path=path,
    )


def open_instance_volume(path: str | Path, what: str) -> tuple[Any, Path, str]:
    """The (z, y, x) instance array of ``path``, its store and label name.

    Raises
    ------
    UserError
        Not found, unreadable, not finished, no single instance label image, not (z, y, x)
        integers.
    """
    import zarr  # deferred: heavy

    from dlpipe.stores.volume import open_labels, require_finished

    path = Path(path)
    if not path.exists():
        raise UserError(f"{what}: no such file or folder", path=path)
    if path.suffix.lower() in (".tif", ".tiff"):
        arr, store, name = open_labels(path), path, path.stem
    else:
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:
            raise UserError(f"{what}: cannot open as Zarr ({exc})", path=path) from None
        if isinstance(node, zarr.Array):
            arr, store = node, path
            name = path.parent.name if path.name == "0" else path.name
        elif path.parent.name == "labels":  # STORE/labels/NAME
            store, name = path.parent.parent, path.name
            if "0" not in node:
                raise UserError(f"{what}: label image without level 0", path=path)
            arr = node["0"]
        else:
            store, name = path, find_instance_labels(path, what)
            arr = node[f"labels/{name}/0"]
        require_finished(store)
    if arr.ndim != 3:
        raise UserError(f"{what}: instance labels must be (z, y, x), got {arr.shape}", path=path)
    if np.dtype(arr.dtype).kind not in "ui":
        raise UserError(f"{what}: instance labels must be integers, got {arr.dtype}", path=path)
    return arr, store, name


def class_name(name: str) -> str:
    """The class of a volume's instances from its label name (``pores_instances`` -> pores)."""
    base = re.sub(r"[_-]?instances$", "", name)
    return base or "object"


def volume_overlaps(
    pred: Any, truth: Any, z_ranges: Sequence[tuple[int, int]], slab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap counts of (pred id, true id) pairs, zeros included: (p, t, count) arrays."""
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []

    def reduce() -> None:
        k = np.concatenate(keys)
        c = np.concatenate(counts)
        u, inv = np.unique(k, return_inverse=True)
        keys[:], counts[:] = [u], [np.bincount(inv, weights=c).astype(np.int64)]

    for z0, z1 in z_ranges:
        for a in range(z0, z1, slab):
            b = min(z1, a + slab)
            p = np.asarray(pred[a:b]).astype(np.uint64)
            t = np.asarray(truth[a:b]).astype(np.uint64)
            u, c = np.unique((p << np.uint64(32)) | t, return_counts=True)
            keys.append(u)
            counts.append(c.astype(np.int64))
            if len(keys) > 32:
                reduce()
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    reduce()
    k = keys[0]
    return (
        (k >> np.uint64(32)).astype(np.int64),
        (k & np.uint64(2**32 - 1)).astype(np.int64),
        counts[0],
    )


class PredictedVolume:
    """The objects of an instance prediction of slices ``[z0, z0 + n)`` of a volume
    (instance-unet's ``PRED.zarr``: ``instances``, ``semantic`` (n, y, x)), read along z in
    the volume's coordinates; with ``keep``, only the objects of that class."""

    def __init__(self, instances: Any, semantic: Any, z0: int, keep: int | None) -> None:
        self.instances, self.semantic, self.z0, self.keep = instances, semantic, z0, keep
        self.z1 = z0 + int(instances.shape[0])

    def __getitem__(self, sel: slice) -> np.ndarray:
        a, b = sel.start - self.z0, sel.stop - self.z0
        if a < 0 or b > self.z1 - self.z0:
            raise UserError(f"slices {sel.start}-{sel.stop - 1} were not predicted")
        ids = np.asarray(self.instances[a:b])
        if self.keep is not None:
            ids = np.where(np.asarray(self.semantic[a:b]) == self.keep, ids, 0)
        return ids


def add_volume(
    ev: InstanceEvaluator,
    p: np.ndarray,
    t: np.ndarray,
    c: np.ndarray,
    cls: int = 1,
    scores: dict[int, float] | None = None,
) -> None:
    """Add one volume's pair counts to ``ev`` (every object of class ``cls``)."""
    p_ids = np.unique(p[p != 0])
    t_ids = np.unique(t[t != 0])
    p_area = np.bincount(np.searchsorted(p_ids, p[p != 0]), weights=c[p != 0], minlength=len(p_ids))
    t_area = np.bincount(np.searchsorted(t_ids, t[t != 0]), weights=c[t != 0], minlength=len(t_ids))
    both = (p != 0) & (t != 0)
    inter = np.zeros((len(p_ids), len(t_ids)), np.int64)
    inter[np.searchsorted(p_ids, p[both]), np.searchsorted(t_ids, t[both])] = c[both]
    ev.add_pairs(
        p_ids,
        t_ids,
        inter,
        p_area.astype(np.int64),
        t_area.astype(np.int64),
        dict.fromkeys(t_ids.tolist(), cls),
        dict.fromkeys(p_ids.tolist(), cls),
        None if scores is None else {int(i): scores.get(int(i), 1.0) for i in p_ids},
    )


def components_of(
    path: str | Path,
    class_name_: str,
    shape: Sequence[int],
    classes: Sequence[str] | None = None,
) -> tuple[Any, Path, str, Any]:
    """The 26-connected components of class ``class_name_`` of a semantic label volume.

    ``path``: a label volume (``PRED.zarr``, ``CLEAN.zarr``, a baseline's prediction, a
    TIFF) whose label values are class ids, named by its ``dlpipe.classes`` (or the label
    image's ``properties``, else ``classes``: ``evaluation.classes``). Labelled chunk by chunk
    (:func:`dlpipe.postprocess.components.label_chunked`) into a scratch Zarr.

    Returns
    -------
    ids (a Zarr array), the store, the label name, the scratch TemporaryDirectory (keep it
    alive while ``ids`` is read).
    """
    import tempfile

    import zarr  # deferred: heavy

    from dlpipe.postprocess.components import label_chunked
    from dlpipe.stores.volume import chunk_shape, open_labels

    path = Path(path)
    if not path.exists():
        raise UserError("prediction: no such file or folder", path=path)
    sem = open_labels(path)
    if tuple(sem.shape) != tuple(shape):
        raise UserError(
            f"prediction shape {tuple(sem.shape)} differs from the truth's {tuple(shape)}",
            path=path,
        )
    classes = _semantic_classes(path) or [str(c) for c in classes or []]
    if class_name_ not in classes:
        raise UserError(
            f"--components {class_name_}: not a class of the prediction "
            f"({', '.join(classes[1:]) or 'no class names'})",
            path=path,
        )
    scratch = tempfile.TemporaryDirectory(prefix="dlpipe-components-")
    chunks = tuple(chunk_shape(sem))
    ids = zarr.create_array(
        str(Path(scratch.name) / "ids.zarr"), shape=sem.shape, chunks=chunks, dtype="uint32"
    )
    label_chunked(sem, [classes.index(class_name_)], connectivity=26, out=ids, progress=False)
    return ids, path, "phases", scratch


def _semantic_classes(path: Path) -> list[str]:
    """Class names of a semantic label volume: ``dlpipe.classes`` of its root, else its
    label image's ``properties``, else none."""
    from dlpipe.stores.volume import _group_attrs

    attrs = _group_attrs(path) or {}
    classes = (attrs.get("dlpipe") or {}).get("classes")
    if classes:
        return [str(c) for c in classes]
    labels = (_group_attrs(path / "labels" / "phases") or {}).get("ome", {})
    props = (labels.get("image-label") or {}).get("properties") or []
    named = {int(q["label-value"]): str(q.get("name")) for q in props if "label-value" in q}
    return [named.get(i, f"class_{i}") for i in range(max(named) + 1)] if named else []
