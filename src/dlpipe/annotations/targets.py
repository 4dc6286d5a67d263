"""Mask R-CNN targets in torchvision's contract, from a converted CVAT dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def targets_from_arrays(semantic: np.ndarray, instances: np.ndarray) -> dict[str, Any]:
    """torchvision Mask R-CNN targets of one image.

    Parameters
    ----------
    semantic : (H, W) uint8 class map (0 background)
    instances : (H, W) uint32 instance map (0 background, 1..K)

    Returns
    -------
    dict with ``boxes`` float32 tensor [N, 4] (x1, y1, x2, y2 with 0 <= x1 < x2 <= W,
    pixel edges: the box of a single pixel (i, j) is (j, i, j + 1, i + 1)), ``labels``
    int64 [N] (class ids, >= 1), ``masks`` uint8 [N, H, W], for the N instances that
    have at least one visible pixel, in increasing instance id.
    """
    import torch

    h, w = instances.shape
    flat = instances.ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids != 0
    ids, first = ids[keep], first[keep]
    labels = semantic.ravel()[first].astype(np.int64)
    masks = instances[None, :, :] == ids[:, None, None].astype(instances.dtype)
    boxes = np.zeros((len(ids), 4), np.float32)
    if len(ids):
        rows = masks.any(axis=2)
        cols = masks.any(axis=1)
        boxes[:, 0] = cols.argmax(axis=1)
        boxes[:, 1] = rows.argmax(axis=1)
        boxes[:, 2] = w - cols[:, ::-1].argmax(axis=1)
        boxes[:, 3] = h - rows[:, ::-1].argmax(axis=1)
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def targets(dataset: str | Path | Any, index: int) -> dict[str, Any]:
    """Mask R-CNN targets of image ``index`` of a dataset written by :func:`convert`.

    Parameters
    ----------
    dataset : path of the Zarr group, or the opened group
    index : image position (0..N-1, the order of ``image_names``)
    """
    import zarr

    group = dataset
    if isinstance(dataset, str | Path):
        group = zarr.open_group(str(dataset), mode="r")
    return targets_from_arrays(
        np.asarray(group["semantic"][index]), np.asarray(group["instances"][index])
    )
