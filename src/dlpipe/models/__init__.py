"""Segmentation networks.

Public API
----------
UNet
    Modular U-Net: 2D, 2.5D (k slices as channels) and 3D; plain or residual blocks,
    batch/group norm, dropout, transposed-conv or interpolation up-sampling, noise input.
build_unet
    A U-Net from a model card's ``architecture`` mapping.
count_parameters
    Trainable parameter count.
torch_device
    The ``device`` setting (``auto``, ``cpu``, ``cuda``) as a torch device.
build_maskrcnn, maskrcnn_from_card, to_model_input
    torchvision's Mask R-CNN (ResNet-50/34/18-FPN or MobileNetV3-FPN), its input convention.
"""

from typing import Any

from dlpipe.models.devices import torch_device
from dlpipe.models.unet import UNet, build_unet, count_parameters

_LAZY = ("build_maskrcnn", "maskrcnn_from_card", "to_model_input")


def __getattr__(name: str) -> Any:
    # Mask R-CNN lives in torchvision, whose import costs ~165 MiB of resident memory:
    # loaded on first use only, so that U-Net training and prediction do not pay for it.
    if name in _LAZY:
        from dlpipe.models import maskrcnn

        return getattr(maskrcnn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "UNet",
    "build_maskrcnn",
    "build_unet",
    "count_parameters",
    "maskrcnn_from_card",
    "to_model_input",
    "torch_device",
]
