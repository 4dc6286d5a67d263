"""``dlpipe predict`` with an instance-unet card: maps, then the seeded watershed.

The output has Mask R-CNN's layout (:mod:`dlpipe.prediction.instances`), so that
``dlpipe evaluate --instances`` and every reader of a Mask R-CNN prediction read it too:
``PRED.zarr`` with ``instances`` uint32 and ``semantic`` uint8 (N, H, W) for a dataset, or
(Z, Y, X) for a tiled volume predicted in 3D (ids unique in the volume), the per-object table
``instances.csv`` / ``instances.parquet`` (a volume's rows add ``z2``; ``z`` is then the
object's first slice), attributes ``dlpipe`` (kind, classes, model, thresholds) and the
completion marker last. The maps (``maps/foreground``, ``maps/distance``,
``maps/boundary`` float16) are kept beside them.

* A dataset Zarr: each image whole (windows of ``window`` pixels inside), then
  :func:`~dlpipe.postprocess.watershed.seeded_watershed`.
* A tiled volume: the maps block by block (``block`` + the network's ``margin`` of
  context), written to ``maps/``; then
  :func:`~dlpipe.postprocess.watershed.watershed_chunked` floods block by block with
  ``halo`` of context and joins the objects cut by block faces. Memory holds one block and
  the face planes, never the volume. A 2d / 2.5d model predicts the maps slice by slice and
  the watershed then runs in 3D over the stacked maps.
"""

from __future__ import annotations

import hashlib
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
from scipy import ndimage
from tqdm.auto import tqdm

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.models.devices import torch_device
from dlpipe.models.instance_unet import FAMILY, build_instance_unet, head_channels
from dlpipe.postprocess.watershed import check_thresholds, watershed_chunked
from dlpipe.prediction.instance_maps import Maps, infer_maps
from dlpipe.results import StageResult
from dlpipe.stores.atomic import atomic_path
from dlpipe.stores.channels import to_channels
from dlpipe.stores.dataset import create_dataset_array, open_store
from dlpipe.stores.instance_table import write_instance_table
from dlpipe.stores.marker import mark_complete, require_complete
from dlpipe.stores.volume import is_zarr_group
from dlpipe.stores.weights import load_weights

log = logging.getLogger("dlpipe.prediction")

__all__ = ["DEFAULTS", "InstanceUNetModel", "load_instance_unet", "predict_instance_unet"]

DEFAULTS: dict[str, Any] = defaults()["predict"]["instance_unet"]
"""The ``predict.instance_unet`` defaults, from the config schema."""


@dataclass
class InstanceUNetModel:
    """An instance U-Net rebuilt from its card, in eval mode."""

    card: dict[str, Any]
    net: torch.nn.Module
    classes: list[str]
    mode: str
    context: int
    multiple: int
    p0_1: float
    p99_9: float
    digest: str


def load_instance_unet(
    model_dir: str | Path, card: Mapping[str, Any] | None = None
) -> InstanceUNetModel:
    """Rebuild ``MODEL_DIR``'s instance U-Net from ``card.json`` and ``weights.pt``.

    Raises
    ------
    UserError
        Not an instance-unet card, fields missing, weights missing or not fitting.
    """
    from dlpipe.stores.card import read_card

    model_dir = Path(model_dir)
    path = model_dir / "card.json"
    card = dict(card) if card is not None else read_card(model_dir)
    if card.get("model") != FAMILY:
        raise UserError(f"model card is not an {FAMILY} card", path=path)
    for key in ("architecture", "classes", "normalisation", "watershed", "input"):
        if key not in card:
            raise UserError(f"{FAMILY} card has no {key!r}", path=path)
    arch, classes = dict(card["architecture"]), list(card["classes"])
    if len(classes) < 2 or int(arch.get("n_classes", -1)) != head_channels(len(classes)):
        raise UserError(
            f"architecture.n_classes ({arch.get('n_classes')}) must be the {len(classes)} "
            "classes + 2 (boundary, distance)",
            path=path,
        )
    if len(classes) > 255:
        raise UserError(f"{len(classes)} classes do not fit uint8 labels", path=path)
    weights = model_dir / card.get("weights", "weights.pt")
    if not weights.is_file():
        raise UserError("weights file missing", path=weights)
    net = build_instance_unet(arch, source=path)
    try:
        net.load_state_dict(load_weights(weights))
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"weights do not fit the card's architecture: {first}", path=weights
        ) from None
    net.eval()
    norm = card["normalisation"]
    h = hashlib.sha256(weights.read_bytes())
    h.update(json.dumps({"architecture": arch, "classes": classes}, sort_keys=True).encode())
    return InstanceUNetModel(
        card,
        net,
        [str(c) for c in classes],
        str(card["input"]),
        int(card.get("context_slices", 1)),
        2 ** (int(arch.get("depth", 4)) - 1),
        float(norm["p0_1"]),
        float(norm["p99_9"]),
        h.hexdigest(),
    )


def _settings(model: InstanceUNetModel, params: Mapping[str, Any]) -> dict[str, Any]:
    """``predict.instance_unet`` over the card's watershed values and the defaults."""
    p = dict(DEFAULTS) | {k: v for k, v in dict(params or {}).items() if v is not None}
    check_thresholds(p, "predict.instance_unet")
    ws = model.card["watershed"]
    for key in ("seed_threshold", "foreground_threshold", "min_size"):
        if p.get(key) is None:
            p[key] = ws[key]
    check_thresholds(p, "the card's watershed")
    three = model.mode == "3d"
    p["window"] = int(p["window"] or (96 if three else 512))
    p["margin"] = int(p["margin"] if p["margin"] is not None else (16 if three else 32))
    if p["window"] <= 2 * p["margin"]:
        raise UserError(
            f"predict.instance_unet.window ({p['window']}) must exceed twice the margin "
            f"({p['margin']})"
        )
    return p


def _normalise(model: InstanceUNetModel, raw: np.ndarray, colour: bool) -> np.ndarray:
    grey = np.asarray(to_channels(raw, 1, channel_last=colour), np.float32)
    return np.clip((grey - model.p0_1) / (model.p99_9 - model.p0_1), 0.0, 1.0)


def _table_rows(
    res: Any, classes: list[str], image: int, image_name: str, z0: int | None = None
) -> list[dict[str, Any]]:
    """The instance-table rows of a watershed result (stores.instance_table).

    A 2D result (bbox ``y1, x1, y2, x2``) gives ``z`` -1; a 3D one (bbox ``z1, y1, x1, z2,
    y2, x2``) gives ``z`` and ``z2``, offset by ``z0`` (the first slice of the block).
    """
    rows = []
    for k in range(1, res.count + 1):
        box = [int(v) for v in res.bbox[k]]
        if z0 is None:
            y1, x1, y2, x2 = box
            zs = {"z": -1}
        else:
            za, y1, x1, zb, y2, x2 = box
            zs = {"z": za + z0, "z2": zb + z0}
        cls = int(res.class_id[k])
        rows.append(
            {
                "image": image,
                "image_name": image_name,
                **zs,
                "instance_id": k,
                "class_id": cls,
                "class_name": classes[cls],
                "score": float(res.score[k]),
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "area": int(res.sizes[k]),
            }
        )
    return rows


def predict_instance_unet(
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
    """Predict the instances of a dataset Zarr or a tiled volume with an instance U-Net.

    Parameters
    ----------
    model_dir : folder of ``card.json`` (model ``instance-unet``) and ``weights.pt``
    source : dataset Zarr (``images``) or tiled ``VOL.zarr`` (level ``0``)
    out : ``PRED.zarr`` (see the module text); appears by one rename when complete
    params : ``predict.instance_unet`` (:data:`DEFAULTS`; thresholds None: the card's)
    card : the model card when already read
    device, torch_threads : where and with how many threads the network runs

    Returns
    -------
    StageResult
        images, instances, seconds, peak_rss_mb and the thresholds used.
    """
    from dlpipe.prediction.memory import peak_rss_mb

    t0 = time.perf_counter()
    out, source = Path(out), Path(source)
    if out.exists() and not overwrite:
        raise UserError("output exists (use --overwrite to replace it)", path=out)
    model = load_instance_unet(model_dir, card)
    p = _settings(model, params or {})
    if not source.is_dir() or not is_zarr_group(source):
        raise UserError(
            "not a Zarr group (expected a dataset Zarr with `images` or a tiled VOL.zarr)",
            path=source,
        )
    require_complete(source, "input")
    root_in, keys = open_store(source)
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    dev = torch_device(device, "predict.device")
    model.net.to(dev)
    if "images" in keys:
        if model.mode != "2d":
            raise UserError(
                f"a {model.mode} instance U-Net predicts tiled volumes, not a dataset Zarr",
                path=source,
            )
        run = _predict_dataset
    elif "0" in keys:
        from dlpipe.prediction.instance_unet_volume import predict_volume_instances as run
    else:
        raise UserError(
            "no `images` array nor image level `0`: not a dataset Zarr or tiled volume",
            path=source,
        )
    with atomic_path(out, overwrite=overwrite) as tmp:
        summary = run(model, root_in, source, tmp, p, dev, progress)
        summary["seconds"] = time.perf_counter() - t0
        summary["peak_rss_mb"] = peak_rss_mb()
        root = zarr.open_group(str(tmp), mode="r+")
        attrs = dict(root.attrs.get("dlpipe", {}))
        attrs.update(
            model={"dir": str(Path(model_dir).resolve()), "hash": model.digest, "family": FAMILY},
            params={k: p[k] for k in DEFAULTS},
            source=str(source.resolve()),
            complete=True,
        )
        root.attrs["dlpipe"] = attrs
        mark_complete(tmp, json.dumps(summary) + "\n")
    s = summary
    log.info("predict: %d instances in %.1f s", s["instances"], s["seconds"])
    return StageResult(
        s,
        metrics={
            k: float(s[k])
            for k in ("images", "instances", "seconds", "peak_rss_mb", "joined_across_blocks")
            if k in s
        },
        params={
            "seed_threshold": p["seed_threshold"],
            "foreground_threshold": p["foreground_threshold"],
            "min_size": p["min_size"],
        },
        artifacts=[out / "instances.csv"],
        summary=f"predicted {s['instances']} instances in {s['images']} "
        f"{'image' if s['images'] == 1 else 'images'} (instance U-Net, seed "
        f"{p['seed_threshold']:g}, foreground {p['foreground_threshold']:g}, "
        f"{s['seconds']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MiB): {out}",
    )


def _predict_dataset(
    model: InstanceUNetModel,
    root_in: Any,
    source: Path,
    tmp: Path,
    p: Mapping[str, Any],
    dev: Any,
    progress: bool,
) -> dict[str, Any]:
    arr = root_in["images"]
    if arr.ndim not in (3, 4):
        raise UserError(f"images {tuple(arr.shape)} must be (N, H, W) or (N, H, W, C)", path=source)
    colour = arr.ndim == 4  # a channel axis: grey(+alpha) or RGB(A)
    n, h, w = (int(v) for v in arr.shape[:3])
    names = list(root_in.attrs.get("image_names") or [f"image_{i:04d}" for i in range(n)])
    sizes = root_in.attrs.get("image_sizes")
    sizes = [(int(a), int(b)) for a, b in sizes] if sizes else [(h, w)] * n
    root = zarr.open_group(str(tmp), mode="w")
    inst_arr = create_dataset_array(root, "instances", (n, h, w), "uint32")
    sem_arr = create_dataset_array(root, "semantic", (n, h, w), "uint8")
    maps = root.require_group("maps")
    fg_arr = create_dataset_array(maps, "foreground", (n, h, w), "float16")
    dist_arr = create_dataset_array(maps, "distance", (n, h, w), "float16")
    bnd_arr = create_dataset_array(maps, "boundary", (n, h, w), "float16")
    rows: list[dict[str, Any]] = []
    for i in tqdm(range(n), desc="predict", unit="image", disable=None if progress else True):
        hh, ww = sizes[i]
        raw = np.asarray(arr[i, :hh, :ww])
        img = _normalise(model, raw, colour)[None]
        if p["scale"] != 1:
            img = ndimage.zoom(img, (1, p["scale"], p["scale"]), order=1)
        m = infer_maps(
            model.net,
            img,
            len(model.classes),
            window=p["window"],
            margin=p["margin"],
            multiple=model.multiple,
            device=dev,
        )
        if p["scale"] != 1:  # the maps back at the image's size
            zoom = (hh / img.shape[1], ww / img.shape[2])
            m = Maps(
                *(ndimage.zoom(a, zoom, order=1) for a in (m.foreground, m.distance, m.boundary)),
                ndimage.zoom(m.classes, zoom, order=0),
            )
        lab = np.zeros((hh, ww), np.uint32)
        res = watershed_chunked(
            m.foreground,
            m.distance,
            lab,
            block=(hh, ww),
            halo=(1, 1),
            seed_threshold=p["seed_threshold"],
            foreground_threshold=p["foreground_threshold"],
            min_size=p["min_size"],
            classes=m.classes,
            n_classes=len(model.classes),
        )
        pad = [(0, h - hh), (0, w - ww)]
        inst_arr[i] = np.pad(lab, pad)
        sem_arr[i] = np.pad(res.class_id[lab].astype(np.uint8), pad)
        fg_arr[i] = np.pad(m.foreground, pad).astype(np.float16)
        dist_arr[i] = np.pad(m.distance, pad).astype(np.float16)
        bnd_arr[i] = np.pad(m.boundary, pad).astype(np.float16)
        rows += _table_rows(res, model.classes, i, names[i])
    write_instance_table(tmp, rows)
    root.attrs["dlpipe"] = {
        "kind": "instances",
        "classes": model.classes,
        "image_names": names,
        "z": None,
        "source_kind": "dataset",
        "image_sizes": [list(s) for s in sizes],
        "ids": "unique within each image",
    }
    return {"images": n, "instances": len(rows)}
