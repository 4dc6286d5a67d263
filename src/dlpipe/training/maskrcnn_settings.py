"""Mask R-CNN training settings: the CPU/GPU presets, pixel sizes, the monitor, the architecture.

Read by :class:`dlpipe.training.maskrcnn.MaskRCNNTask` (and re-exported there).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError

__all__ = ["PRESETS", "apply_preset", "architecture", "monitor_score", "pixel_sizes"]

# `train.maskrcnn.preset`: the settings of one machine kind. A key whose value is still the
# schema default takes the preset's value; a key the user set keeps it. `cpu` keeps an
# epoch to minutes on 2 cores; `gpu` is torchvision's reference (ResNet-50, 2000 proposals).
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "batch_size": 2,
        "steps_per_epoch": 25,
        "val_max_patches": 16,
        "maskrcnn.tile_size": 256,
        "maskrcnn.backbone": "resnet18",
        "maskrcnn.rpn_proposals_train": 300,
        "maskrcnn.rpn_proposals_test": 500,
        "maskrcnn.box_batch_size_per_image": 64,
    },
    "gpu": {
        "batch_size": 8,
        "steps_per_epoch": 200,
        "val_max_patches": 256,
        "amp": True,
        "maskrcnn.tile_size": 512,
        "maskrcnn.backbone": "resnet50",
        "maskrcnn.rpn_proposals_train": 2000,
        "maskrcnn.rpn_proposals_test": 1000,
        "maskrcnn.box_batch_size_per_image": 512,
    },
}


def apply_preset(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` with ``train.maskrcnn.preset`` applied to the keys left at their default.

    Returns the parameters and the values the preset set (``{"maskrcnn.tile_size": ...}``).
    """
    from dlpipe.config import defaults

    p = dict(params)
    p["maskrcnn"] = dict(p["maskrcnn"])
    preset = p["maskrcnn"].get("preset") or "cpu"
    base = defaults()["train"]
    applied = {}
    for key, value in PRESETS[preset].items():
        if key.startswith("maskrcnn."):
            k = key.split(".", 1)[1]
            if p["maskrcnn"].get(k) == base["maskrcnn"].get(k):
                p["maskrcnn"][k] = applied[key] = value
        elif p.get(key) == base.get(key):
            p[key] = applied[key] = value
    return p, applied


def pixel_sizes(store: str | Path, m: Mapping[str, Any]) -> dict[str, float | None]:
    """The training images' pixel size and the model's (the common scale).

    ``data``: ``train.maskrcnn.pixel_size``, else the dataset's attribute ``pixel_size``,
    else None (unknown). ``model``: ``train.maskrcnn.model_pixel_size``, else ``data``.
    The images are rescaled by ``data / model`` when both are known.
    """
    import zarr  # deferred: heavy

    data = m.get("pixel_size")
    if data is None:
        try:
            attrs = dict(zarr.open_group(str(store), mode="r").attrs)
        except Exception:  # open_instances names a bad store
            attrs = {}
        data = attrs.get("pixel_size")
        if isinstance(data, list | tuple):
            data = data[-1]
    model = m.get("model_pixel_size")
    if model is None:
        model = data
    if model is not None and data is None:
        raise UserError(
            "train.maskrcnn.model_pixel_size needs the training images' pixel size "
            "(train.maskrcnn.pixel_size or the dataset attribute pixel_size)"
        )
    return {
        "data": None if data is None else float(data),
        "model": None if model is None else float(model),
    }


def monitor_score(row: Mapping[str, float], monitor: str) -> float:
    """The score that picks the best epoch: higher is better.

    ``val_loss``: minus the validation loss. ``val_ap50`` / ``val_f1``: the value when it is
    above 0; while it is 0 (or undefined) the tie-break ``-loss / (1 + loss)`` in (-1, 0]
    ranks those epochs by their validation loss, below every epoch with a positive score.
    """
    loss = float(row["val_loss"])
    if monitor == "val_loss":
        return -loss
    v = float(row[monitor])
    if v > 0:
        return v
    return -loss / (1.0 + loss) if loss >= 0 else float("nan")


def architecture(params: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    """The keyword arguments of :func:`dlpipe.models.build_maskrcnn` from ``train.maskrcnn``."""
    m = params["maskrcnn"]
    return {
        "num_classes": num_classes,
        "backbone": m["backbone"],
        "norm": m["norm"],
        "trainable_layers": m["trainable_layers"],
        "tile_size": m["tile_size"],
        "anchor_sizes": list(m["anchor_sizes"]),
        "aspect_ratios": list(m["aspect_ratios"]),
        "detections_per_image": m["detections_per_image"],
        "score_threshold": m["score_threshold"],
        "nms_threshold": m["nms_threshold"],
        "rpn_proposals_train": m["rpn_proposals_train"],
        "rpn_proposals_test": m["rpn_proposals_test"],
        "box_batch_size_per_image": m["box_batch_size_per_image"],
        "mask_head_layers": m["mask_head_layers"],
    }
