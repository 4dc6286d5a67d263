"""The instance U-Net: a :class:`~dlpipe.models.unet.UNet` with three heads.

The network is the U-Net of ``models/unet.py`` (2D, 2.5D or 3D, every architecture option)
whose last 1×1 convolution has ``n_classes + 2`` output channels, read as three heads:

* ``semantic``: channels ``0 .. n_classes - 1``, class logits (softmax; class 0 is the
  background, so the foreground probability is ``1 - p(background)``);
* ``boundary``: channel ``n_classes``, the logit of "on an object's boundary";
* ``distance``: channel ``n_classes + 1``, the logit of the normalised distance to the
  object's boundary (sigmoid: 0 outside and at the border of objects, 1 at their centres).

Grey and colour images: the model sees one grey channel; colour images are converted by the
one channel rule, :func:`dlpipe.stores.channels.to_channels` (RGB(A) to luminance, ITU-R
BT.601 weights), both in training and in prediction, and the card records it
(:func:`dlpipe.stores.channels.card_channels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dlpipe.models.unet import UNet, build_unet

__all__ = [
    "FAMILY",
    "HEADS",
    "build_instance_unet",
    "head_channels",
    "split_heads",
]

FAMILY = "instance-unet"
"""The model family's name: ``train.model``, the card's ``model``."""
HEADS = ("semantic", "boundary", "distance")


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
