"""Mask R-CNN inference of one image, tile by tile: the model, the tiles, their detections.

An image (or a z-slice of a tiled volume) larger than the model's ``tile_size`` is cut into
tiles of ``tile_size`` overlapping by ``overlap`` (a fraction of the tile side; the last tile
is flush with the image border, smaller images are zero-padded after normalisation). The
detections of all tiles are merged (:func:`~dlpipe.prediction.detections.merge_detections`)
and painted into an instance label image
(:func:`~dlpipe.prediction.detections.paint_instances`).

Public API
----------
DEFAULTS
    The ``predict.maskrcnn`` config section's defaults.
MaskRCNNModel, load_maskrcnn
    A Mask R-CNN rebuilt from its card and weights.
tile_starts
    Tile offsets along one axis.
detect_image
    Detections of one image, tile by tile (before merging).
predict_image
    Instances of one image: tiles, merging across tiles, painting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlpipe import models  # Mask R-CNN's torchvision is imported on first use (models.__getattr__)
from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.prediction.detections import (
    Detection,
    crop_to_content,
    merge_detections,
    paint_instances,
)
from dlpipe.prediction.windows import window_starts
from dlpipe.stores.card import read_card
from dlpipe.stores.channels import to_channels
from dlpipe.stores.weights import load_weights

__all__ = [
    "DEFAULTS",
    "MaskRCNNModel",
    "detect_image",
    "load_maskrcnn",
    "predict_image",
    "tile_starts",
]

DEFAULTS: dict[str, Any] = defaults()["predict"]["maskrcnn"]
"""The ``predict.maskrcnn`` defaults, from the config schema (the one source of defaults)."""


@dataclass
class MaskRCNNModel:
    """A Mask R-CNN rebuilt from its card, in eval mode."""

    card: dict[str, Any]
    net: Any
    classes: list[str]
    tile_size: int
    digest: str


def load_maskrcnn(model_dir: str | Path, card: Mapping[str, Any] | None = None) -> MaskRCNNModel:
    """Rebuild ``MODEL_DIR``'s Mask R-CNN from ``card.json`` and load ``weights.pt``.

    ``card``: the model card when the caller has read it already (None: read it here).

    Raises
    ------
    UserError
        Missing/invalid card, not a Mask R-CNN card, classes that do not match
        ``architecture.num_classes``, input other than ``2d``, missing weights or weights
        that do not fit the architecture.
    """
    model_dir = Path(model_dir)
    path = model_dir / "card.json"
    card = dict(card) if card is not None else read_card(model_dir)
    if card.get("model") != "maskrcnn":
        raise UserError("model card is not a Mask R-CNN card (model != 'maskrcnn')", path=path)
    for key in ("architecture", "classes"):
        if key not in card:
            raise UserError(f"Mask R-CNN card has no {key!r}", path=path)
    arch, classes = card["architecture"], card["classes"]
    if not isinstance(arch, dict) or not isinstance(classes, list) or len(classes) < 2:
        raise UserError("Mask R-CNN card needs an architecture mapping and >= 2 classes", path=path)
    if int(arch.get("num_classes", -1)) != len(classes):
        raise UserError(
            f"architecture.num_classes ({arch.get('num_classes')}) differs from the "
            f"{len(classes)} classes of the card",
            path=path,
        )
    if len(classes) > 255:
        raise UserError(f"{len(classes)} classes do not fit uint8 labels", path=path)
    if card.get("input", "2d") != "2d":
        raise UserError(
            f"a Mask R-CNN card must have input '2d', got {card.get('input')!r}", path=path
        )
    weights = model_dir / card.get("weights", "weights.pt")
    if not weights.is_file():
        raise UserError("weights file missing", path=weights)
    try:
        net = models.maskrcnn_from_card(card)
    except TypeError as exc:
        raise UserError(f"architecture does not describe a Mask R-CNN: {exc}", path=path) from None
    try:
        state = load_weights(weights)
        net.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"weights do not fit the card's architecture: {first}", path=weights
        ) from None
    net.eval()
    h = hashlib.sha256(weights.read_bytes())
    h.update(json.dumps({"architecture": arch, "classes": classes}, sort_keys=True).encode())
    return MaskRCNNModel(
        card, net, [str(c) for c in classes], int(arch.get("tile_size", 512)), h.hexdigest()
    )


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of side ``tile`` over ``[0, length)``.

    Step ``int(tile * (1 - overlap))``; the last tile is flush with the end; a length not
    above ``tile`` gives one tile at 0 (zero-padded past the end).
    """
    if length <= tile:
        return [0]
    return window_starts(length, tile, overlap)


# --------------------------------------------------------------------------- prediction


def detect_image(
    model: MaskRCNNModel,
    image: np.ndarray,
    p0_1: float,
    p99_9: float,
    params: Mapping[str, Any],
    device: Any = None,
) -> tuple[list[Detection], int]:
    """Detections of one image, tile by tile, in image coordinates (before merging).

    Parameters
    ----------
    image : (y, x) or (y, x, c) with c in {1, 3}
    params : the ``predict.maskrcnn`` section (overlap, score_threshold, mask_threshold,
        min_area, batch_size)

    Returns
    -------
    detections, number of tiles
    """
    # The box head's own threshold decides which detections reach the (costly) mask head:
    # raise it to ours so that none is computed only to be dropped.
    own = float(model.card["architecture"].get("score_threshold", 0.05))
    model.net.roi_heads.score_thresh = max(own, float(params["score_threshold"]))
    x = models.to_model_input(image, p0_1, p99_9)
    _, h, w = x.shape
    t = model.tile_size
    tiles = [
        (y0, x0)
        for y0 in tile_starts(h, t, params["overlap"])
        for x0 in tile_starts(w, t, params["overlap"])
    ]
    dets: list[Detection] = []
    bs = max(1, int(params["batch_size"]))
    for b in range(0, len(tiles), bs):
        batch, valid = [], []
        for y0, x0 in tiles[b : b + bs]:
            crop = x[:, y0 : y0 + t, x0 : x0 + t]
            vh, vw = crop.shape[1:]
            if (vh, vw) != (t, t):
                crop = torch.nn.functional.pad(crop, (0, t - vw, 0, t - vh))
            batch.append(crop.to(device) if device is not None else crop)
            valid.append((y0, x0, y0 + vh, x0 + vw))
        with torch.inference_mode():
            outs = model.net(batch)
        for out, tile in zip(outs, valid, strict=True):
            keep = out["scores"] >= float(params["score_threshold"])
            masks = (out["masks"][keep, 0] > float(params["mask_threshold"])).cpu().numpy()
            vh, vw = tile[2] - tile[0], tile[3] - tile[1]
            for lab, sc, m in zip(
                out["labels"][keep].tolist(), out["scores"][keep].tolist(), masks, strict=True
            ):
                m = m[:vh, :vw]
                if m.sum() < int(params["min_area"]):
                    continue
                d = crop_to_content(lab, sc, tile[0], tile[1], m, tile)
                if d is not None:
                    dets.append(d)
    return dets, len(tiles)


def predict_image(
    model: MaskRCNNModel,
    image: np.ndarray,
    p0_1: float,
    p99_9: float,
    params: Mapping[str, Any] | None = None,
    device: Any = None,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], int]:
    """Instances of one image: tiles, merging across tiles, painting.

    Parameters
    ----------
    model : from :func:`load_maskrcnn` (its ``net`` on ``device``)
    image : (y, x) grey or (y, x, c) with c in 1..4, raw values; made the card's
        ``channels`` by the channel rule (:func:`dlpipe.stores.channels.to_channels`:
        grey replicated to RGB, RGB(A) to luminance)
    p0_1, p99_9 : normalisation (the card's ``normalisation``)
    params : the ``predict.maskrcnn`` section (:data:`DEFAULTS` for missing keys)
    scale : the image's pixel size over the model's: the image is rescaled by it before
        detection and the instances back to the image's size (boxes and areas measured
        there)

    Returns
    -------
    instances : (y, x) uint32, ids 1..K (1 = highest score)
    semantic : (y, x) uint8 class ids
    rows : per instance {instance_id, class_id, score, x1, y1, x2, y2, area}
    tiles : number of tiles run
    """
    from dlpipe.models.maskrcnn import rescale, scaled_size  # torchvision: on first use

    p = dict(DEFAULTS) | dict(params or {})
    image = to_channels(np.asarray(image), int(model.card.get("channels") or 3))
    shape = tuple(image.shape[:2])
    if scale != 1.0:
        image = rescale(image, scaled_size(*shape, scale), labels=False)
    dets, n_tiles = detect_image(model, image, p0_1, p99_9, p, device)
    merged = merge_detections(
        dets,
        rule=p["merge_rule"],
        threshold=float(p["merge_threshold"]),
        nms_iou=float(p["nms_iou"]),
    )
    inst, sem, rows = paint_instances(merged, tuple(image.shape[:2]))
    if scale != 1.0:
        inst, sem = rescale(inst, shape, labels=True), rescale(sem, shape, labels=True)
        rows = _measure_rows(inst, rows)
    return inst, sem, rows, n_tiles


def _measure_rows(inst: np.ndarray, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the instances still in ``inst``, box and area measured in it."""
    from scipy import ndimage  # deferred: heavy

    boxes = ndimage.find_objects(inst)
    areas = np.bincount(inst.ravel(), minlength=len(boxes) + 1)
    out = []
    for r in rows:
        k = int(r["instance_id"])
        if k > len(boxes) or boxes[k - 1] is None:
            continue
        ys, xs = boxes[k - 1]
        box = {"x1": xs.start, "y1": ys.start, "x2": xs.stop, "y2": ys.stop}
        out.append(r | box | {"area": int(areas[k])})
    return out
