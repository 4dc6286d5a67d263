"""Tiled Mask R-CNN inference: tiles with overlap, merging across tiles, instance tables.

An image (or a z-slice of a tiled volume) larger than the model's ``tile_size`` is cut into
tiles of ``tile_size`` overlapping by ``overlap`` (a fraction of the tile side; the last tile
is flush with the image border, smaller images are zero-padded after normalisation). The
detections of all tiles are merged (:func:`merge_detections`) and painted into an instance
label image (:func:`paint_instances`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.models import torch_device

log = logging.getLogger("dlpipe.prediction")

COMPLETE = ".dlpipe_complete"
TABLE = "instances.csv"
PARQUET = "instances.parquet"
COLUMNS = [
    "image",
    "image_name",
    "z",
    "instance_id",
    "class_id",
    "class_name",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
    "area",
]
DEFAULTS: dict[str, Any] = defaults()["predict"]["maskrcnn"]
"""The ``predict.maskrcnn`` defaults, from the config schema (the one source of defaults)."""
MERGE_RULES = ("iou", "overlap_min")


# --------------------------------------------------------------------------- detections


@dataclass
class Detection:
    """One detected object in image coordinates.

    ``mask`` is a bool (h, w) crop whose pixel (0, 0) is image pixel (``y0``, ``x0``);
    ``tile`` the valid (unpadded) region of the tile it came from, (y0, x0, y1, x1) half-open.
    """

    label: int
    score: float
    y0: int
    x0: int
    mask: np.ndarray
    tile: tuple[int, int, int, int]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), half-open, of the mask crop."""
        h, w = self.mask.shape
        return (self.y0, self.x0, self.y0 + h, self.x0 + w)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def _crop_to_content(
    label: int, score: float, y0: int, x0: int, mask: np.ndarray, tile: tuple[int, int, int, int]
) -> Detection | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Detection(
        int(label),
        float(score),
        int(y0 + r0),
        int(x0 + c0),
        np.ascontiguousarray(mask[r0:r1, c0:c1]),
        tile,
    )


def _window(d: Detection, box: tuple[int, int, int, int]) -> np.ndarray:
    """``d.mask`` read over ``box`` (y0, x0, y1, x1) in image coordinates (False outside)."""
    y0, x0, y1, x1 = box
    out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
    dy0, dx0, dy1, dx1 = d.box
    a0, b0, a1, b1 = max(y0, dy0), max(x0, dx0), min(y1, dy1), min(x1, dx1)
    if a1 > a0 and b1 > b0:
        out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = d.mask[a0 - dy0 : a1 - dy0, b0 - dx0 : b1 - dx0]
    return out


def _intersect(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int] | None:
    y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def _union_box(a: Sequence[int], b: Sequence[int]) -> tuple[int, int, int, int]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def same_object(a: Detection, b: Detection, *, rule: str = "iou", threshold: float = 0.5) -> bool:
    """Whether two detections from different tiles are one object cut by a tile border.

    In the region both tiles see (the intersection of their valid regions), the two masks
    must agree: ``iou`` = |A∩B| / |A∪B| or ``overlap_min`` = |A∩B| / min(|A|, |B|), with A
    and B restricted to that region, must exceed ``threshold``. Same class required;
    detections of one tile are never merged by this rule (NMS handles them).
    """
    if a.label != b.label or a.tile == b.tile:
        return False
    shared = _intersect(a.tile, b.tile)
    if shared is None:
        return False
    ra, rb = _intersect(a.box, shared), _intersect(b.box, shared)
    if ra is None or rb is None or _intersect(ra, rb) is None:
        return False  # a mask empty in the shared region, or no common pixel possible
    win = _union_box(ra, rb)  # both masks restricted to the shared region lie in here
    ma, mb = _window(a, win), _window(b, win)
    na, nb = int(ma.sum()), int(mb.sum())
    if not na or not nb:
        return False
    inter = int(np.count_nonzero(ma & mb))
    if rule == "iou":
        return inter / (na + nb - inter) > threshold
    return inter / min(na, nb) > threshold


def _mask_iou(a: Detection, b: Detection) -> float:
    if _intersect(a.box, b.box) is None:
        return 0.0
    box = _union_box(a.box, b.box)
    ma, mb = _window(a, box), _window(b, box)
    inter = int(np.count_nonzero(ma & mb))
    return inter / (a.area + b.area - inter)


def merge_detections(
    detections: Sequence[Detection],
    *,
    rule: str = "iou",
    threshold: float = 0.5,
    nms_iou: float = 0.5,
) -> list[Detection]:
    """Merge the detections of all tiles of one image into one detection per object.

    1. Detections of different tiles that :func:`same_object` pairs (in the overlap of
       their tiles, same class, masks agreeing above ``threshold``) are joined, transitively
       (an object over four tiles becomes one): the union of their masks, the maximum score.
    2. Non-maximum suppression on mask IoU: in decreasing score order, a detection whose
       full-mask IoU with a kept detection of the same class exceeds ``nms_iou`` is dropped.

    Returns
    -------
    list of Detection
        In decreasing score order; ``tile`` of a merged detection is the union of its tiles'.
    """
    if rule not in MERGE_RULES:
        raise UserError(f"unknown merge rule {rule!r} ({', '.join(MERGE_RULES)})")
    n = len(detections)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        boxes = np.array([d.box for d in detections])
        labels = np.array([d.label for d in detections])
        tiles = np.array([d.tile for d in detections])
        for i in range(n):
            j = np.arange(i + 1, n)
            cand = j[
                (labels[j] == labels[i])
                & (boxes[j, 0] < boxes[i, 2])
                & (boxes[j, 2] > boxes[i, 0])
                & (boxes[j, 1] < boxes[i, 3])
                & (boxes[j, 3] > boxes[i, 1])
                & np.any(tiles[j] != tiles[i], axis=1)
            ]
            for k in cand:
                if find(i) != find(int(k)) and same_object(
                    detections[i], detections[int(k)], rule=rule, threshold=threshold
                ):
                    parent[find(int(k))] = find(i)
    groups: dict[int, list[Detection]] = {}
    for i, d in enumerate(detections):
        groups.setdefault(find(i), []).append(d)
    merged = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        box = members[0].box
        tile = members[0].tile
        for m in members[1:]:
            box, tile = _union_box(box, m.box), _union_box(tile, m.tile)
        mask = np.zeros((box[2] - box[0], box[3] - box[1]), dtype=bool)
        for m in members:
            mask |= _window(m, box)
        merged.append(
            Detection(members[0].label, max(m.score for m in members), box[0], box[1], mask, tile)
        )
    merged.sort(key=lambda d: -d.score)
    kept: list[Detection] = []
    kboxes = np.zeros((len(merged), 4), dtype=np.int64)
    klabels = np.zeros(len(merged), dtype=np.int64)
    for d in merged:
        n_kept = len(kept)
        b = d.box
        near = np.flatnonzero(
            (klabels[:n_kept] == d.label)
            & (kboxes[:n_kept, 0] < b[2])
            & (kboxes[:n_kept, 2] > b[0])
            & (kboxes[:n_kept, 1] < b[3])
            & (kboxes[:n_kept, 3] > b[1])
        )
        if all(_mask_iou(kept[k], d) <= nms_iou for k in near):
            kboxes[n_kept], klabels[n_kept] = b, d.label
            kept.append(d)
    return kept


def paint_instances(
    detections: Sequence[Detection], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Paint detections into an instance image, lowest score first (highest on top).

    Parameters
    ----------
    detections : merged detections of one image
    shape : (y, x) of the image

    Returns
    -------
    instances : (y, x) uint32, ids 1..K in decreasing score order (1 = highest score); a
        detection wholly covered by higher-scored ones is dropped
    semantic : (y, x) uint8, the class of each pixel's instance (0 background)
    rows : per instance {instance_id, class_id, score, x1, y1, x2, y2, area} from the painted
        pixels (box in pixel edges: x2, y2 exclusive)
    """
    order = sorted(range(len(detections)), key=lambda i: (detections[i].score, -i))
    provisional = np.zeros(shape, dtype=np.uint32)
    for rank, i in enumerate(order, start=1):
        d = detections[i]
        y1, x1 = min(d.box[2], shape[0]), min(d.box[3], shape[1])
        m = d.mask[: y1 - d.y0, : x1 - d.x0]
        provisional[d.y0 : y1, d.x0 : x1][m] = rank
    from scipy import ndimage

    slices = ndimage.find_objects(provisional)
    alive = [r for r in range(len(order), 0, -1) if slices[r - 1] is not None]  # best first
    lut = np.zeros(len(order) + 1, dtype=np.uint32)
    lut[alive] = np.arange(1, len(alive) + 1, dtype=np.uint32)
    instances = lut[provisional]
    cls = np.zeros(len(order) + 1, dtype=np.uint8)
    cls[alive] = [detections[order[r - 1]].label for r in alive]
    semantic = cls[provisional]
    areas = np.bincount(provisional.ravel(), minlength=len(order) + 1)
    rows = []
    for new_id, r in enumerate(alive, start=1):
        d = detections[order[r - 1]]
        sy, sx = slices[r - 1]
        rows.append(
            {
                "instance_id": new_id,
                "class_id": int(d.label),
                "score": float(d.score),
                "x1": int(sx.start),
                "y1": int(sy.start),
                "x2": int(sx.stop),
                "y2": int(sy.stop),
                "area": int(areas[r]),
            }
        )
    return instances, semantic, rows


# --------------------------------------------------------------------------- model


@dataclass
class MaskRCNNModel:
    """A Mask R-CNN rebuilt from its card, in eval mode."""

    card: dict[str, Any]
    net: Any
    classes: list[str]
    tile_size: int
    digest: str


def is_maskrcnn_card(model_dir: str | Path) -> bool:
    """Whether ``MODEL_DIR/card.json`` names a Mask R-CNN (False when unreadable)."""
    try:
        return json.loads((Path(model_dir) / "card.json").read_text()).get("model") == "maskrcnn"
    except (OSError, ValueError, AttributeError):
        return False


def load_maskrcnn(model_dir: str | Path) -> MaskRCNNModel:
    """Rebuild ``MODEL_DIR``'s Mask R-CNN from ``card.json`` and load ``weights.pt``.

    Raises
    ------
    UserError
        Missing/invalid card, not a Mask R-CNN card, classes that do not match
        ``architecture.num_classes``, input other than ``2d``, missing weights or weights
        that do not fit the architecture.
    """
    import torch

    from dlpipe.models import maskrcnn_from_card
    from dlpipe.prediction.model import read_card

    model_dir = Path(model_dir)
    path = model_dir / "card.json"
    card = read_card(model_dir)
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
        net = maskrcnn_from_card(card)
    except TypeError as exc:
        raise UserError(f"architecture does not describe a Mask R-CNN: {exc}", path=path) from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
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

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` without the zero padding of a dataset of mixed sizes."""
        if self.squeeze:
            return np.asarray(self.array[...])
        if self.sizes is not None:
            h, w = self.sizes[self.indices[i]]
            return np.asarray(self.array[self.indices[i], :h, :w])
        return np.asarray(self.array[self.indices[i]])


def _norm_from_card(card: Mapping[str, Any]) -> tuple[float, float] | None:
    norm = card.get("normalisation") or {}
    if "p0_1" in norm and "p99_9" in norm:
        return float(norm["p0_1"]), float(norm["p99_9"])
    return None


def _open_input(path: Path, card: Mapping[str, Any], slices: str) -> _Input:
    import zarr

    if not path.is_dir() or not ((path / "zarr.json").is_file() or (path / ".zgroup").is_file()):
        raise UserError(
            "not a Zarr group (expected a dataset Zarr with `images` or a tiled VOL.zarr)",
            path=path,
        )
    if not (path / COMPLETE).is_file():
        raise UserError("input is incomplete (no .dlpipe_complete marker)", path=path)
    root = zarr.open_group(str(path), mode="r")
    if "images" in root:
        arr = root["images"]
        if (arr.ndim == 4 and arr.shape[-1] not in (1, 3)) or arr.ndim not in (3, 4):
            raise UserError(
                f"channels do not fit: images {tuple(arr.shape)} must be (N, H, W) or "
                "(N, H, W, C) with C 1 or 3",
                path=path,
            )
        have = int(arr.shape[-1]) if arr.ndim == 4 else 1
        want = card.get("channels")
        if want is not None and int(want) != have:
            raise UserError(
                f"channels do not fit: the model was trained on {want}-channel "
                f"images, these have {have}",
                path=path,
            )
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
        )
    if "0" in root:
        from dlpipe.prediction.volume import open_volume

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
            root["0"],
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


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of side ``tile`` over ``[0, length)``.

    Step ``int(tile * (1 - overlap))``; the last tile is flush with the end; a length not
    above ``tile`` gives one tile at 0 (zero-padded past the end).
    """
    if length <= tile:
        return [0]
    from dlpipe.prediction.windows import window_starts

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
    import torch

    from dlpipe.models import to_model_input

    # The box head's own threshold decides which detections reach the (costly) mask head:
    # raise it to ours so that none is computed only to be dropped.
    own = float(model.card["architecture"].get("score_threshold", 0.05))
    model.net.roi_heads.score_thresh = max(own, float(params["score_threshold"]))
    x = to_model_input(image, p0_1, p99_9)
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
                d = _crop_to_content(lab, sc, tile[0], tile[1], m, tile)
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
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], int]:
    """Instances of one image: tiles, merging across tiles, painting.

    Parameters
    ----------
    model : from :func:`load_maskrcnn` (its ``net`` on ``device``)
    image : (y, x) or (y, x, c) with c in {1, 3}, raw grey values
    p0_1, p99_9 : normalisation (the card's ``normalisation``)
    params : the ``predict.maskrcnn`` section (:data:`DEFAULTS` for missing keys)

    Returns
    -------
    instances : (y, x) uint32, ids 1..K (1 = highest score)
    semantic : (y, x) uint8 class ids
    rows : per instance {instance_id, class_id, score, x1, y1, x2, y2, area}
    tiles : number of tiles run
    """
    p = dict(DEFAULTS) | dict(params or {})
    dets, n_tiles = detect_image(model, image, p0_1, p99_9, p, device)
    merged = merge_detections(
        dets,
        rule=p["merge_rule"],
        threshold=float(p["merge_threshold"]),
        nms_iou=float(p["nms_iou"]),
    )
    inst, sem, rows = paint_instances(merged, tuple(np.asarray(image).shape[:2]))
    return inst, sem, rows, n_tiles


def _write_tables(rows: list[dict[str, Any]], folder: Path) -> None:
    import csv

    with open(folder / TABLE, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "image": pa.int64(),
        "image_name": pa.string(),
        "z": pa.int64(),
        "instance_id": pa.int64(),
        "class_id": pa.int64(),
        "class_name": pa.string(),
        "score": pa.float64(),
        "x1": pa.int64(),
        "y1": pa.int64(),
        "x2": pa.int64(),
        "y2": pa.int64(),
        "area": pa.int64(),
    }
    table = pa.table({c: pa.array([r[c] for r in rows], type=types[c]) for c in COLUMNS})
    pq.write_table(table, folder / PARQUET)


def predict_instances(
    model_dir: str | Path,
    source: str | Path,
    out: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    device: str = "auto",
    torch_threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
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
        ``dlpipe`` (classes, image_names, z, model, params); ``.dlpipe_complete`` last. The
        store appears by one rename when complete.
    params : the ``predict.maskrcnn`` config section (:data:`DEFAULTS`)
    device : auto, cpu or cuda
    torch_threads : torch intra-op threads (None: torch's default)

    Returns
    -------
    dict
        images, instances, tiles, seconds, images_per_s.
    """
    import zarr
    from tqdm.auto import tqdm

    from dlpipe._io import atomic_path

    p = dict(DEFAULTS) | dict(params or {})
    if p["merge_rule"] not in MERGE_RULES:
        raise UserError(f"unknown merge rule {p['merge_rule']!r} ({', '.join(MERGE_RULES)})")
    t0 = time.perf_counter()
    out, source = Path(out), Path(source)
    if out.exists() and not overwrite:
        raise UserError("output exists (use --overwrite to replace it)", path=out)
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    model = load_maskrcnn(model_dir)
    inp = _open_input(source, model.card, p["slices"])
    dev = torch_device(device, "predict.device")
    model.net.to(dev)
    n, (h, w) = len(inp.indices), inp.shape
    rows: list[dict[str, Any]] = []
    n_tiles = 0
    with atomic_path(out, overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        chunks = (1, min(h, 1024), min(w, 1024))
        inst_arr = root.create_array(
            "instances",
            shape=(n, h, w),
            chunks=chunks,
            dtype="uint32",
            fill_value=0,
            dimension_names=["n", "y", "x"],
        )
        sem_arr = root.create_array(
            "semantic",
            shape=(n, h, w),
            chunks=chunks,
            dtype="uint8",
            fill_value=0,
            dimension_names=["n", "y", "x"],
        )
        for i in tqdm(range(n), desc="predict", unit="image", disable=None if progress else True):
            inst, sem, table, nt = predict_image(model, inp.image(i), inp.p0_1, inp.p99_9, p, dev)
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
        _write_tables(rows, tmp)
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
        (tmp / COMPLETE).write_text(json.dumps(summary) + "\n")
    log.info("predict: %d images, %d tiles, %d instances in %.1f s", n, n_tiles, len(rows), seconds)
    return summary
