"""The layout of a U-Net prediction run: block, halo, batch, threads and window kind.

:func:`plan_run` chooses them from the card, the volume and the machine;
:func:`adopt_layout` keeps those of an output already started (resume, slab jobs);
:func:`region_cost` is what whole regions cost against sliding windows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.errors import UserError
from dlpipe.prediction.block import auto_halo, whole_halo
from dlpipe.prediction.memory import (
    auto_block,
    block_target_bytes,
    estimate_block_bytes,
    machine_cores,
    whole_batch,
)
from dlpipe.prediction.model import fully_convolutional, receptive_reach, size_multiple
from dlpipe.prediction.output import MANIFEST

log = logging.getLogger("dlpipe.prediction")

__all__ = ["SLIDING_BLOCK", "adopt_layout", "plan_run", "region_cost"]

SLIDING_BLOCK = (32, 256, 256)
"""The block of a sliding-window run (``window: patch`` or a card that asks for its patch)
when ``predict.block`` is null."""


def plan_run(
    model: Any, info: Any, p: Mapping[str, Any], *, scheduler: str | None = None
) -> dict[str, Any]:
    """Block, halo, batch, threads and window kind of a U-Net run, from the machine.

    - Windows: a fully convolutional net (:func:`~dlpipe.prediction.model.
      fully_convolutional`) with ``window`` null predicts each block's region (block +
      halo) as one window; ``window: patch`` (or a card that asks for it) or explicit
      sides use Gaussian-blended sliding windows of that size.
    - Halo (null): whole windows: the receptive field's reach
      (:func:`~dlpipe.prediction.block.whole_halo`; 0 along an axis the block spans);
      sliding windows: :func:`~dlpipe.prediction.block.auto_halo`.
    - Block (null): whole windows: the largest that fits the working set a block may take
      (:func:`~dlpipe.prediction.memory.block_target_bytes`: the memory budget, or a
      quarter of the available memory, at most 2 GiB; whole z-slices where they fit),
      :func:`~dlpipe.prediction.memory.auto_block`; sliding windows: :data:`SLIDING_BLOCK`.
    - Batch (null): sliding windows 8; whole 2D slices as many as fit
      (:func:`~dlpipe.prediction.memory.whole_batch`); a 3D region 1.
    - Torch threads (null): the machine's cores shared by the blocks running at once.
    """
    workers = max(1, int(p["threads"]))
    torch_threads = (
        int(p["torch_threads"]) if p["torch_threads"] else max(1, machine_cores() // workers)
    )
    chunks = (1, *info.array.chunks) if info.squeeze_z else tuple(info.array.chunks)
    itemsize = np.dtype(info.dtype).itemsize
    budget = float(p["memory_budget_mb"]) if p["memory_budget_mb"] else None
    whole = p["window"] is None and fully_convolutional(model.card)
    multiple = size_multiple(model.card)
    target = block_target_bytes(budget if not scheduler else None, workers)
    if whole:
        reach = receptive_reach(model.card)

        def halo_of(b: tuple[int, ...]) -> tuple[int, int, int]:
            if p["halo"] is not None:
                return tuple(int(h) for h in p["halo"])
            return whole_halo(model, b, info.shape, reach, multiple)

        block = (
            tuple(int(b) for b in p["block"])
            if p["block"] is not None
            else auto_block(
                model,
                info.shape,
                chunks,
                target,
                halo_of,
                multiple,
                itemsize,
                bool(p["probabilities"]),
            )
        )
        spatial = 3 if model.mode == "3d" else 2
        if p["block"] is None and p["halo"] is None:
            cost = region_cost(block, halo_of(block), info.shape, spatial)
            if cost > (1 / (1 - float(p["overlap"]))) ** spatial:
                # the receptive field's halos around the blocks that fit cost more than
                # the overlap of sliding windows (a deep 3D net): slide the card's patch
                log.info(
                    "predict: whole regions of %s would compute %.2fx the voxels; "
                    "sliding windows of the card's patch instead",
                    list(block),
                    cost,
                )
                whole = False
    if not whole:
        block = tuple(int(b) for b in (p["block"] or SLIDING_BLOCK))
    if len(block) != 3 or min(block) < 1:
        raise UserError(f"predict.block must be three positive sides (z, y, x), got {list(block)}")
    if whole:
        halo = halo_of(block)
        side = [
            -(-(min(b, s) + 2 * h) // multiple) * multiple
            for b, s, h in zip(block, info.shape, halo, strict=True)
        ]
        window = tuple(side) if model.mode == "3d" else tuple(side[1:])
    else:
        halo = (
            tuple(int(h) for h in p["halo"])
            if p["halo"] is not None
            else auto_halo(model, float(p["overlap"]))
        )
        if model.mode != "3d":
            halo = (model.context // 2, *halo[1:])
        window = tuple(model.window)
    if p["batch_size"]:
        batch = int(p["batch_size"])
    elif not whole:
        batch = 8
    elif model.mode == "3d":
        batch = 1
    else:
        batch = whole_batch(model, window, min(block[0], info.shape[0]), target)
    est = estimate_block_bytes(
        model,
        block,
        halo,
        batch,
        len(model.classes),
        itemsize=itemsize,
        chunks=chunks,
        probabilities=bool(p["probabilities"]),
        window=window,
    )
    return {
        "block": block,
        "halo": halo,
        "batch": batch,
        "workers": workers,
        "torch_threads": torch_threads,
        "whole": whole,
        "multiple": multiple,
        "estimate": est,
        "budget": budget,
    }


def adopt_layout(out: Path, p: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """Block and halo left to the machine (null) take those of an output already started on
    the same volume shape (its manifest), so that a resumed run, the slab jobs of a split
    run and a re-run on another machine keep its layout."""
    if p["block"] is not None or not (out / MANIFEST).is_file():
        return p
    try:
        lay = json.loads((out / MANIFEST).read_text())["layout"]
    except (OSError, ValueError, KeyError):
        return p
    if lay.get("shape") != list(shape) or (lay.get("window") == "block + halo") != (
        p["window"] is None
    ):
        return p
    q = dict(p)
    q["block"] = list(lay["block"])
    if q["halo"] is None:
        q["halo"] = list(lay["halo"])
    return q


def region_cost(
    block: tuple[int, ...], halo: tuple[int, ...], shape: tuple[int, ...], spatial: int
) -> float:
    """Voxels the network computes per output voxel with whole regions: each block plus
    its halo towards its neighbours (the volume border adds none), along the spatial axes
    (the last ``spatial``)."""
    cost = 1.0
    for b, h, s in list(zip(block, halo, shape, strict=True))[-spatial:]:
        n = -(-s // b)
        cost *= (s + 2 * h * (n - 1)) / s
    return cost
