"""Pretrained Mask R-CNN weights from a local file (nothing is ever downloaded).

Read by :class:`dlpipe.training.maskrcnn.MaskRCNNTask` (and re-exported there).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlpipe.errors import UserError

__all__ = ["CLASS_HEADS", "load_pretrained"]

# Layers whose shapes depend on the number of classes: skipped when a full pretrained
# state dict was trained on other classes.
CLASS_HEADS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


def load_pretrained(model: nn.Module, path: str | Path, scope: str = "full") -> int:
    """Load a local weights file into ``model``; nothing is ever downloaded.

    Parameters
    ----------
    model : a Mask R-CNN from :func:`dlpipe.models.build_maskrcnn`
    path : a state dict saved with ``torch.save`` (or a ``dlpipe`` checkpoint with ``model``)
    scope : ``full`` (a Mask R-CNN of the same architecture; the class-dependent predictor
        layers are skipped when their shapes differ) or ``backbone`` (a torchvision
        classification ResNet / MobileNetV3 state dict, loaded into ``backbone.body``)

    Returns
    -------
    int
        Number of tensors loaded.

    Raises
    ------
    UserError
        The file is missing or unreadable, or the state dict does not fit (the first
        mismatching key is named).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "pretrained weights file not found (train.maskrcnn.pretrained; nothing is downloaded)",
            path=path,
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = f"cannot read pretrained weights: {type(exc).__name__}"
        raise UserError(msg, path=path) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError("pretrained weights are not a state dict (name -> tensor)", path=path)
    own = model.state_dict()
    if scope == "backbone":
        mapped = {}
        for k, v in state.items():
            if k.startswith(("fc.", "classifier.")):
                continue
            key = k[len("features.") :] if k.startswith("features.") else k
            mapped["backbone.body." + key] = v
        state = mapped
        wanted = [k for k in own if k.startswith("backbone.body.")]
    else:
        wanted = list(own)

    def bad(key: str, why: str) -> UserError:
        return UserError(
            f"pretrained weights do not fit the {scope} model: first mismatching key "
            f"{key!r} ({why})",
            path=path,
        )

    load = {}
    for k in wanted:
        if k.endswith("num_batches_tracked"):
            if k in state:
                load[k] = state[k]
            continue
        head = scope == "full" and k.startswith(CLASS_HEADS)
        if k not in state:
            if head:
                continue
            raise bad(k, "missing from the file")
        if tuple(state[k].shape) != tuple(own[k].shape):
            if head:
                continue
            raise bad(
                k, f"shape {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
            )
        load[k] = state[k]
    for k in state:
        if k not in own and not k.endswith("num_batches_tracked"):
            raise bad(k, "not in the model")
    model.load_state_dict(load, strict=False)
    return len(load)
