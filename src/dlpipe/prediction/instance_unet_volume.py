"""An instance U-Net over a tiled volume: maps block by block, then the chunked watershed.

1. The maps (foreground, distance, boundary, class) block by block: a 3d model reads each
   block with ``margin`` voxels of context; a 2d / 2.5d model predicts the block's z-slices
   (with their context slices). They go to ``PRED.zarr/maps/``, chunked as the blocks.
2. :func:`~dlpipe.postprocess.watershed.watershed_chunked` floods each block with ``halo``
   voxels of context and joins the objects cut by block faces; ids are unique in the volume.

Memory holds one block (and its context), the face planes of the block grid and a few
numbers per object, never the volume. Called by
:func:`~dlpipe.prediction.instance_unet.predict_instance_unet`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.postprocess.watershed import block_slices, watershed_chunked
from dlpipe.prediction.instance_maps import infer_maps
from dlpipe.prediction.instance_unet import InstanceUNetModel, _normalise, _table_rows
from dlpipe.stores.instance_table import VOLUME_COLUMNS, write_instance_table
from dlpipe.stores.volume import open_volume

__all__ = ["predict_volume_instances"]


def predict_volume_instances(
    model: InstanceUNetModel,
    root_in: Any,
    source: Path,
    tmp: Path,
    p: Mapping[str, Any],
    dev: Any,
    progress: bool,
) -> dict[str, Any]:
    """Write a tiled volume's instances into ``tmp`` (see the module text); the summary."""
    vol = open_volume(source)
    image = vol.image
    if image.ndim != 3:
        raise UserError(f"image level 0 {tuple(image.shape)} must be (z, y, x)", path=source)
    nz, ny, nx = (int(v) for v in image.shape)
    z0, z1 = 0, nz
    if p["slices"] == "test":
        split = (vol.attrs.get("split") or {}).get("test")
        if not split:
            raise UserError(
                "predict.instance_unet.slices is 'test' but the volume has no test split",
                path=source,
            )
        z0, z1 = max(0, int(split[0])), min(nz, int(split[1]))
    shape = (z1 - z0, ny, nx)
    block = tuple(min(int(b), s) for b, s in zip(p["block"], shape, strict=True))
    root = zarr.open_group(str(tmp), mode="w")
    chunks = block

    def create(g: Any, name: str, dtype: str) -> Any:
        return g.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)

    inst_arr = create(root, "instances", "uint32")
    sem_arr = create(root, "semantic", "uint8")
    maps = root.require_group("maps")
    fg_arr, dist_arr = create(maps, "foreground", "float16"), create(maps, "distance", "float16")
    bnd_arr, cls_arr = create(maps, "boundary", "float16"), create(maps, "class", "uint8")
    n_cls = len(model.classes)
    # 1. the maps, block by block
    if model.mode == "3d":
        margin = int(p["margin"])
        for core in tqdm(
            block_slices(shape, block), desc="maps", disable=None if progress else True
        ):
            ext = tuple(
                slice(max(c.start - margin, 0), min(c.stop + margin, s))
                for c, s in zip(core, shape, strict=True)
            )
            src = (slice(ext[0].start + z0, ext[0].stop + z0), *ext[1:])
            img = _normalise(model, np.asarray(image[src]), False)[None]
            m = infer_maps(
                model.net,
                img,
                n_cls,
                window=p["window"],
                margin=p["margin"],
                multiple=model.multiple,
                device=dev,
            )
            inner = tuple(
                slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext, strict=True)
            )
            fg_arr[core] = m.foreground[inner].astype(np.float16)
            dist_arr[core] = m.distance[inner].astype(np.float16)
            bnd_arr[core] = m.boundary[inner].astype(np.float16)
            cls_arr[core] = m.classes[inner]
    else:
        half = model.context // 2
        for zb in tqdm(
            range(0, shape[0], block[0]), desc="maps", disable=None if progress else True
        ):
            zs = range(zb, min(zb + block[0], shape[0]))
            lo, hi = max(zb + z0 - half, 0), min(zs[-1] + z0 + half + 1, nz)
            slab = _normalise(model, np.asarray(image[lo:hi]), False)
            fg = np.zeros((len(zs), ny, nx), np.float16)
            dist, bnd = np.zeros_like(fg), np.zeros_like(fg)
            cls = np.ones((len(zs), ny, nx), np.uint8)
            for k, z in enumerate(zs):
                pick = [min(max(z + z0 + d, 0), nz - 1) - lo for d in range(-half, half + 1)]
                m = infer_maps(
                    model.net,
                    slab[pick],
                    n_cls,
                    window=p["window"],
                    margin=p["margin"],
                    multiple=model.multiple,
                    device=dev,
                )
                fg[k], dist[k], bnd[k], cls[k] = m.foreground, m.distance, m.boundary, m.classes
            sl = slice(zb, zb + len(zs))
            fg_arr[sl], dist_arr[sl], bnd_arr[sl], cls_arr[sl] = fg, dist, bnd, cls
    # 2. the watershed, block by block, objects joined across block faces
    res = watershed_chunked(
        fg_arr,
        dist_arr,
        inst_arr,
        block=block,
        halo=tuple(int(h) for h in p["halo"]),
        seed_threshold=p["seed_threshold"],
        foreground_threshold=p["foreground_threshold"],
        min_size=p["min_size"],
        classes=cls_arr,
        n_classes=n_cls,
        progress=(lambda g: tqdm(g, desc="watershed")) if progress else None,
    )
    for core in block_slices(shape, block):
        sem_arr[core] = res.class_id[np.asarray(inst_arr[core])].astype(np.uint8)
    rows = _table_rows(res, model.classes, 0, vol.path.name, z0)
    write_instance_table(tmp, rows, VOLUME_COLUMNS)
    root.attrs["dlpipe"] = {
        "kind": "instances",
        "classes": model.classes,
        "z": [z0, z1],
        "source_kind": "volume",
        "ids": "unique within the volume (3D objects)",
        "block": list(block),
    }
    return {"images": 1, "instances": len(rows), "joined_across_blocks": res.merged}
