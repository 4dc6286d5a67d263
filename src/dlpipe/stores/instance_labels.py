"""Instance label images in a volume store: ``VOL.zarr/labels/<name>/0``, uint32 object ids.

An instance label image holds one id per object (0 background, ids need not be consecutive),
e.g. the synth truth ``labels/pore_instances`` (one id per pore ellipsoid) that
``dlpipe tile --instances`` stores beside the phase labels. It has one level (ids are not
downsampled), the NGFF ``image-label`` attributes without colours (too many ids) and is
listed in the ``labels`` group. Readers: ``dlpipe train --model instance-unet`` (volume
input) and ``dlpipe evaluate --instances`` (truth volume).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.stores.ngff import label_image_attrs, labels_group_attrs

__all__ = ["find_instance_labels", "instance_label_names", "write_instance_labels"]


def write_instance_labels(
    store: str | Path,
    name: str,
    read: Callable[[int, int], np.ndarray],
    shape: Sequence[int],
    chunks: Sequence[int],
    *,
    voxel_size: Sequence[float],
    unit: str | None,
    version: str = "0.5",
    where: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``labels/<name>/0`` (uint32) into the open store ``store``, slab by slab.

    Called by the writer of the store before its completion marker. ``read(z0, z1)`` gives
    the ids of slices ``[z0, z1)``; values must be integers in 0 .. 2**32 - 1.

    Returns
    -------
    dict
        ``name``, ``objects`` (distinct non-zero ids), ``max_id``.

    Raises
    ------
    UserError
        Ids that are not integers or fall outside uint32 (naming ``where`` and the slices).
    """
    import zarr  # deferred: heavy

    root = zarr.open_group(str(store), mode="r+")
    lgroup = root.require_group("labels")
    old = dict(lgroup.attrs)
    names = list((old.get("ome") or {}).get("labels") or old.get("labels") or [])
    if name not in names:
        names.append(name)
    lgroup.attrs.update(labels_group_attrs(names, version))
    group = lgroup.require_group(name)
    shape = tuple(int(s) for s in shape)
    chunks = tuple(min(int(c), s) for c, s in zip(chunks, shape, strict=True))
    arr = group.create_array(
        "0", shape=shape, chunks=chunks, dtype="uint32", fill_value=0, overwrite=True
    )
    ids: set[int] = set()
    step = chunks[0]
    for z0 in range(0, shape[0], step):
        z1 = min(z0 + step, shape[0])
        data = np.asarray(read(z0, z1))
        if data.dtype.kind not in "ui":
            raise UserError(f"instance ids must be integers, got {data.dtype}", path=where)
        if data.size and (data.min() < 0 or int(data.max()) > 2**32 - 1):
            raise UserError(
                f"instance ids must be 0 .. 2**32 - 1, found {data.min()}..{data.max()} in "
                f"slices {z0}-{z1 - 1}",
                path=where,
            )
        arr[z0:z1] = data.astype(np.uint32, copy=False)
        ids.update(np.unique(data).tolist())
    ids.discard(0)
    group.attrs.update(
        label_image_attrs(name, 1, list(voxel_size), unit, version, values=[0], title="reference")
    )
    return {"name": name, "objects": len(ids), "max_id": max(ids, default=0)}


def _is_instance_name(name: str) -> bool:
    return name == "instances" or name.endswith("_instances")


def instance_label_names(store: str | Path) -> tuple[list[str], list[str]]:
    """The instance label images of the volume store ``store`` and all its label images.

    An instance label image is the one ``dlpipe tile --instances`` recorded in the root's
    ``dlpipe.instances.name``, or a label image named ``instances`` or ``*_instances`` whose
    level 0 holds integers (e.g. ``labels/pore_instances``).

    Returns
    -------
    (instance names, every label image name), each sorted
    """
    import zarr  # deferred: heavy

    try:
        root = zarr.open_group(str(store), mode="r")
        group = root["labels"]
    except Exception:
        return [], []
    names = sorted(k for k, v in group.members() if isinstance(v, zarr.Group))
    recorded = ((dict(root.attrs).get("dlpipe") or {}).get("instances") or {}).get("name")
    picks = []
    for name in names:
        if name != recorded and not _is_instance_name(name):
            continue
        node = group[name]
        if "0" in node and np.dtype(node["0"].dtype).kind in "ui":
            picks.append(name)
    return picks, names


def find_instance_labels(store: str | Path, what: str, option: str) -> str:
    """The name of the one instance label image of the volume store ``store``.

    Parameters
    ----------
    store : the volume store (``VOL.zarr``)
    what : what the store is, for the message (``"tiled volume"``)
    option : the setting that names the array instead (the message's advice)

    Raises
    ------
    UserError
        None or several instance label images (naming the candidates).
    """
    picks, names = instance_label_names(store)
    if len(picks) == 1:
        return picks[0]
    if picks:
        raise UserError(
            f"{what} has several instance label arrays ({', '.join(picks)}): "
            f"choose one with {option}=NAME",
            path=store,
        )
    raise UserError(
        f"{what} has no instance label array labels/instances or labels/*_instances (labels: "
        f"{', '.join(names) or 'none'}; `dlpipe tile --instances`, or name one with {option}=NAME)",
        path=store,
    )
