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
"""

from dlpipe.models.unet import UNet, build_unet, count_parameters

__all__ = ["UNet", "build_unet", "count_parameters"]
