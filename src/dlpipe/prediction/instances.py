"""Mask R-CNN prediction of a dataset Zarr or of a volume's z-slices into instance images.

Public API
----------
predict_instances
    Every image (or z-slice) through :func:`~dlpipe.prediction.maskrcnn.predict_image`
    into ``PRED.zarr``: ``instances``, ``semantic`` and the per-instance table.
TABLE, PARQUET, COLUMNS
    The per-instance table's file names and columns.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from dlpipe.errors import UserError
from dlpipe.models.devices import torch_device
from dlpipe.prediction.detections import MERGE_RULES
from dlpipe.prediction.maskrcnn import DEFAULTS, load_maskrcnn, predict_image
from dlpipe.prediction.volume import open_volume
from dlpipe.results import StageResult
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.dataset import create_dataset_array, open_store
from dlpipe.stores.instance_table import COLUMNS, PARQUET, TABLE, write_instance_table
from dlpipe.stores.marker import mark_complete, require_complete
from dlpipe.stores.volume import is_zarr_group

log = logging.getLogger("dlpipe.prediction")

__all__ = ["COLUMNS", "PARQUET", "TABLE", "predict_instances"]

# --------------------------------------------------------------------------- inputs


@dataclass
class _Input:
    kind: str  # "dataset" or "volume"
    array: Any  # zarr array: (N, H, W[, C]) or (Z, H, W) / (H, W)
    indices: list[int]  # images / z-slices to predict
    names: list[str]
    z: list[int] | None
    p0_1: float
    p99_9: float
    shape: tuple[int, int]  # (H, W)
    squeeze: bool = False
    sizes: list[tuple[int, int]] | None = None  # real (h, w) of zero-padded dataset images
    pixel_size: float | None = None  # the attribute pixel_size of the input

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` without the zero padding of a dataset of mixed sizes."""
        if self.squeeze:
            return np.asarray(self.array[...])
        if self.sizes is not None:
            h, w = self.sizes[self.indices[i]]
            return np.asarray(self.array[self.indices[i], :h, :w])
        return np.asarray(self.array[self.indices[i]])


def _pixel_size(attrs: Any) -> float | None:
    """The attribute ``pixel_size`` of a dataset (a number, or (y, x): x taken)."""
    v = dict(attrs).get("pixel_size")
    if isinstance(v, list | tuple):
        v = v[-1] if v else None
    return None if v is None else float(v)


def image_scale(card: Mapping[str, Any], params: Mapping[str, Any], inp_px: float | None) -> float:
    """The factor images are rescaled by: their pixel size over the card's ``pixel_size``.

    The images' pixel size is ``predict.maskrcnn.pixel_size``, else the input's attribute,
    else the card's (1: no rescaling); a card without ``pixel_size`` never rescales.
    """
    model_px = card.get("pixel_size")
    px = params.get("pixel_size") or inp_px
    if model_px is None:
        if params.get("pixel_size"):
            raise UserError(
                "predict.maskrcnn.pixel_size is set but the model card has no pixel_size "
                "(train with train.maskrcnn.pixel_size)"
            )
        return 1.0
    return 1.0 if px is None else float(px) / float(model_px)


def _norm_from_card(card: Mapping[str, Any]) -> tuple[float, float] | None:
    norm = card.get("normalisation") or {}
    if "p0_1" in norm and "p99_9" in norm:
        return float(norm["p0_1"]), float(norm["p99_9"])
    return None


def _open_input(path: Path, card: Mapping[str, Any], slices: str) -> _Input:
    if not path.is_dir() or not is_zarr_group(path):
        raise UserError(
            "not a Zarr group (expected a dataset Zarr with `images` or a tiled VOL.zarr)",
            path=path,
        )
    require_complete(path, "input")
    root, keys = open_store(path)
    if "images" in keys:
        arr = root["images"]
        if (arr.ndim == 4 and arr.shape[-1] not in (1, 2, 3, 4)) or arr.ndim not in (3, 4):
            raise UserError(
                f"channels do not fit: images {tuple(arr.shape)} must be (N, H, W) or "
                "(N, H, W, C) with C 1 to 4 (grey, grey + alpha, RGB, RGBA)",
                path=path,
            )
        # grey or colour, whatever the model was trained on: the channel rule of
        # dlpipe.stores.channels (predict_image) makes them the card's channels
        norm = _norm_from_card(card)
        if norm is None:
            if arr.dtype.kind not in "ui":
                raise UserError(
                    "missing normalisation: the card has no p0_1/p99_9 and the "
                    f"images are {arr.dtype}",
                    path=path,
                )
            info = np.iinfo(arr.dtype)
            norm = (0.0, float(info.max))
        n = int(arr.shape[0])
        names = list(root.attrs.get("image_names") or [f"image_{i:04d}" for i in range(n)])
        sizes = root.attrs.get("image_sizes")
        if sizes is not None:
            sizes = [(int(a), int(b)) for a, b in sizes]
            bad = [
                i
                for i, (a, b) in enumerate(sizes)
                if not (0 < a <= arr.shape[1] and 0 < b <= arr.shape[2])
            ]
            if len(sizes) != n or bad:
                raise UserError(
                    f"attribute image_sizes does not fit images {tuple(arr.shape)}"
                    f" (image {bad[0] if bad else len(sizes)})",
                    path=path,
                )
        return _Input(
            "dataset",
            arr,
            list(range(n)),
            names,
            None,
            *norm,
            (int(arr.shape[1]), int(arr.shape[2])),
            sizes=sizes,
            pixel_size=_pixel_size(root.attrs),
        )
    if "0" in keys:
        info = open_volume(path, "2d", dict(card), "0")
        depth = info.shape[0]
        zs = list(range(depth))
        if slices == "test" and not info.squeeze_z:
            split = ((root.attrs.get("dlpipe") or {}).get("split") or {}).get("test")
            if not split:
                raise UserError(
                    "predict.maskrcnn.slices is 'test' but the volume has no test split", path=path
                )
            zs = list(range(max(0, int(split[0])), min(depth, int(split[1]))))
        return _Input(
            "volume",
            info.array,
            zs,
            [f"z{z:04d}" for z in zs],
            zs,
            info.p0_1,
            info.p99_9,
            (info.shape[1], info.shape[2]),
            info.squeeze_z,
        )
    raise UserError(
        "no `images` array nor image level `0`: not a dataset Zarr or tiled volume", path=path
    )


def predict_instances(
    model_dir: str | Path,
    source: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    card: Mapping[str, Any] | None = None,
    device: str = "auto",
    torch_threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> StageResult:
    """Predict the instances of every image of a dataset Zarr (or z-slice of a volume).

    Parameters
    ----------
    model_dir : Mask R-CNN model folder (card.json + weights.pt)
    source : dataset Zarr (``images`` (N, H, W[, C]), e.g. from ``dlpipe cvat``) or a
        tiled ``VOL.zarr`` (level ``0`` (z, y, x); every z-slice, or the test split with
        ``slices: test``)
    out : ``PRED.zarr`` to write: ``instances`` uint32 (N, H, W), ids 1..K unique within
        each image (1 = highest score), ``semantic`` uint8 (N, H, W), ``instances.csv`` and
        ``instances.parquet`` (one row per instance, :data:`COLUMNS`), attributes
        ``dlpipe`` (classes, image_names, z, model, params); the completion marker last. The
        store appears by one rename when complete.
    params : the ``predict.maskrcnn`` config section
        (:data:`dlpipe.prediction.maskrcnn.DEFAULTS`)
    card : the model card when the caller has read it already (None: read it here)
    device : auto, cpu or cuda
    torch_threads : torch intra-op threads (None: torch's default)

    Returns
    -------
    dict
        images, instances, tiles, seconds, images_per_s.
    """
    p = dict(DEFAULTS) | dict(params or {})
    if p["merge_rule"] not in MERGE_RULES:
        raise UserError(f"unknown merge rule {p['merge_rule']!r} ({', '.join(MERGE_RULES)})")
    t0 = time.perf_counter()
    out, source = Path(out), Path(source)
    if out.exists() and not overwrite:
        raise UserError("output exists (use --overwrite to replace it)", path=out)
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    model = load_maskrcnn(model_dir, card)
    inp = _open_input(source, model.card, p["slices"])
    dev = torch_device(device, "predict.device")
    model.net.to(dev)
    n, (h, w) = len(inp.indices), inp.shape
    rows: list[dict[str, Any]] = []
    n_tiles = 0
    with atomic_path(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        inst_arr = create_dataset_array(root, "instances", (n, h, w), "uint32")
        sem_arr = create_dataset_array(root, "semantic", (n, h, w), "uint8")
        scale = image_scale(model.card, p, inp.pixel_size)
        for i in tqdm(range(n), desc="predict", unit="image", disable=None if progress else True):
            inst, sem, table, nt = predict_image(
                model, inp.image(i), inp.p0_1, inp.p99_9, p, dev, scale=scale
            )
            n_tiles += nt
            if inst.shape != (h, w):  # a padded image: predicted at its real size
                inst = np.pad(inst, [(0, h - inst.shape[0]), (0, w - inst.shape[1])])
                sem = np.pad(sem, [(0, h - sem.shape[0]), (0, w - sem.shape[1])])
            inst_arr[i] = inst
            sem_arr[i] = sem
            for r in table:
                rows.append(
                    {
                        "image": i,
                        "image_name": inp.names[i],
                        "z": inp.z[i] if inp.z is not None else -1,
                        "class_name": model.classes[r["class_id"]],
                        **r,
                    }
                )
        write_instance_table(tmp, rows)
        root.attrs.update(
            {
                "dlpipe": {
                    "kind": "instances",
                    "classes": model.classes,
                    "image_names": inp.names,
                    "z": inp.z,
                    "source": str(source.resolve()),
                    "source_kind": inp.kind,
                    "image_sizes": inp.sizes,
                    "ids": "unique within each image (1 = highest score)",
                    "model": {"dir": str(Path(model_dir).resolve()), "hash": model.digest},
                    "params": {k: p[k] for k in DEFAULTS},
                    "scale": scale,
                    "complete": True,
                }
            }
        )
        seconds = time.perf_counter() - t0
        summary = {
            "images": n,
            "instances": len(rows),
            "tiles": n_tiles,
            "seconds": seconds,
            "images_per_s": n / seconds if seconds > 0 else 0.0,
        }
        mark_complete(tmp, json.dumps(summary) + "\n")
    log.info("predict: %d images, %d tiles, %d instances in %.1f s", n, n_tiles, len(rows), seconds)
    return StageResult(
        summary,
        metrics={
            k: float(summary[k])
            for k in ("images", "instances", "tiles", "seconds", "images_per_s")
        },
        artifacts=[Path(out) / TABLE],
        summary=f"predicted {summary['instances']} instances in {summary['images']} images "
        f"({summary['tiles']} tiles, {summary['seconds']:.1f} s): {out}",
    )
