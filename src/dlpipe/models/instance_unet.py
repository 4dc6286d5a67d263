"""The instance U-Net: a :class:`~dlpipe.models.unet.UNet` with three heads.

The network is the U-Net of ``models/unet.py`` (2D, 2.5D or 3D, every architecture option)
whose last 1×1 convolution has ``n_classes + 2`` output channels, read as three heads:

* ``semantic``: channels ``0 .. n_classes - 1``, class logits (softmax; class 0 is the
  background, so the foreground probability is ``1 - p(background)``);
* ``boundary``: channel ``n_classes``, the logit of "on an object's boundary";
* ``distance``: channel ``n_classes + 1``, the logit of the normalised distance to the
  object's boundary (sigmoid: 0 outside and at the border of objects, 1 at their centres).

Grey and colour images: the model sees one grey channel (``CHANNEL_RULE``); colour images
are converted to luminance (ITU-R BT.601 weights) both in training and in prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dlpipe.models.unet import UNet, build_unet

__all__ = [
    "CHANNEL_RULE",
    "FAMILY",
    "HEADS",
    "build_instance_unet",
    "head_channels",
    "split_heads",
    "to_grey",
]

FAMILY = "instance-unet"
"""The model family's name: ``train.model``, the card's ``model``."""
HEADS = ("semantic", "boundary", "distance")
CHANNEL_RULE = "rgb-to-luminance (0.299 R + 0.587 G + 0.114 B); grey as is"
"""How images of any channel count become the model's one grey channel (in the card)."""
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def head_channels(n_classes: int) -> int:
    """Output channels of the network for ``n_classes`` semantic classes."""
    return int(n_classes) + 2


def build_instance_unet(
    architecture: Mapping[str, Any], *, source: Any = None, prefix: str = "architecture"
) -> UNet:
    """The network of an instance-unet card (``architecture.n_classes`` = classes + 2)."""
    return build_unet(dict(architecture), source=source, prefix=prefix)


def split_heads(
    logits: torch.Tensor, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(semantic logits (N, C, ...), boundary logit (N, ...), distance logit (N, ...))."""
    return logits[:, :n_classes], logits[:, n_classes], logits[:, n_classes + 1]


def to_grey(image: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """One grey channel: (..., 3 or 4) RGB(A) to luminance, (..., 1) squeezed; float32.

    ``channel_axis`` names the channel axis of a colour image; an image without one (its
    size there is not 1, 3 or 4, e.g. a grey (y, x) image) is returned as float32.
    """
    arr = np.asarray(image)
    if arr.ndim >= 3 and arr.shape[channel_axis] in (1, 3, 4):
        arr = np.moveaxis(arr, channel_axis, -1)
        if arr.shape[-1] == 1:
            return arr[..., 0].astype(np.float32)
        return (arr[..., :3].astype(np.float32) @ _LUMA).astype(np.float32)
    return arr.astype(np.float32)
