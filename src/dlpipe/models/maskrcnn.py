"""torchvision's Mask R-CNN with a choice of backbones, built from a model card's mapping."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops.misc import FrozenBatchNorm2d

from dlpipe.errors import UserError

BACKBONES = ("resnet50", "resnet34", "resnet18", "mobilenet_v3_large")
NORMS = ("batch", "frozen", "group")
# ImageNet statistics: a grey image in [0, 1] is replicated to three channels, so weights
# pretrained on ImageNet see the input distribution they were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _norm_layer(kind: str) -> Any:
    if kind == "frozen":
        return FrozenBatchNorm2d
    if kind == "group":
        return partial(nn.GroupNorm, 32)
    return nn.BatchNorm2d


def build_maskrcnn(
    num_classes: int,
    *,
    backbone: str = "resnet18",
    norm: str = "batch",
    trainable_layers: int = 5,
    tile_size: int = 512,
    anchor_sizes: Sequence[int] = (16, 32, 64, 128, 256),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    detections_per_image: int = 300,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    rpn_proposals_train: int = 2000,
    rpn_proposals_test: int = 1000,
    box_batch_size_per_image: int = 512,
    mask_head_layers: int = 4,
) -> MaskRCNN:
    """torchvision's Mask R-CNN with a ResNet-FPN or MobileNetV3-FPN backbone, untrained.

    Parameters
    ----------
    num_classes : classes including the background (``len(card["classes"])``)
    backbone : ``resnet50`` (the reference), ``resnet34``, ``resnet18`` or
        ``mobilenet_v3_large`` (lighter, for CPU machines)
    norm : ``batch`` (trainable batch norm, training from scratch), ``frozen`` (frozen batch
        norm, as torchvision does for pretrained weights) or ``group`` (32 groups)
    trainable_layers : backbone stages left trainable (5 = all; meaningful with pretrained
        weights)
    tile_size : images are fed at this size and never resized (the model's internal resize
        is pinned to it): train on crops and predict on tiles of ``tile_size`` × ``tile_size``
    anchor_sizes : one anchor size (pixels) per FPN level, five levels for ResNet-FPN and
        three for MobileNet (the first three are used)
    detections_per_image, score_threshold, nms_threshold : post-processing of the box head
    rpn_proposals_train, rpn_proposals_test : proposals kept by the RPN per image (before
        and after its NMS) in training and at prediction; fewer is faster on a CPU
    box_batch_size_per_image : proposals sampled per image to train the box and mask heads
        (a quarter of them positive at most); the mask head's cost scales with it
    mask_head_layers : 256-channel 3×3 convolutions of the mask head (torchvision: 4)

    The defaults of the last four are torchvision's.

    Returns
    -------
    MaskRCNN
        Takes a list of float tensors ``(3, H, W)`` in [0, 1] (see :func:`to_model_input`).
    """
    if backbone not in BACKBONES:
        raise UserError(f"unknown Mask R-CNN backbone {backbone!r} ({', '.join(BACKBONES)})")
    if norm not in NORMS:
        raise UserError(f"unknown Mask R-CNN norm {norm!r} ({', '.join(NORMS)})")
    if num_classes < 2:
        raise UserError(f"Mask R-CNN needs at least 2 classes (background + 1), got {num_classes}")
    norm_layer = _norm_layer(norm)
    if backbone.startswith("resnet"):
        body = resnet_fpn_backbone(
            backbone_name=backbone,
            weights=None,
            norm_layer=norm_layer,
            trainable_layers=trainable_layers,
        )
        levels = 5
    else:
        body = mobilenet_backbone(
            backbone_name=backbone,
            weights=None,
            fpn=True,
            norm_layer=norm_layer,
            trainable_layers=min(trainable_layers, 6),
        )
        levels = 3
    sizes = list(anchor_sizes)[:levels]
    if len(sizes) < levels:
        raise UserError(f"anchor_sizes needs {levels} values for {backbone}, got {sizes}")
    anchors = AnchorGenerator(
        sizes=tuple((int(s),) for s in sizes),
        aspect_ratios=(tuple(float(a) for a in aspect_ratios),) * levels,
    )
    if mask_head_layers < 1:
        raise UserError(f"mask_head_layers must be >= 1, got {mask_head_layers}")
    model = MaskRCNN(
        body,
        num_classes=num_classes,
        min_size=tile_size,
        max_size=tile_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
        rpn_anchor_generator=anchors,
        box_detections_per_img=detections_per_image,
        box_score_thresh=score_threshold,
        box_nms_thresh=nms_threshold,
        rpn_pre_nms_top_n_train=rpn_proposals_train,
        rpn_post_nms_top_n_train=rpn_proposals_train,
        rpn_pre_nms_top_n_test=rpn_proposals_test,
        rpn_post_nms_top_n_test=rpn_proposals_test,
        box_batch_size_per_image=box_batch_size_per_image,
        mask_head=MaskRCNNHeads(body.out_channels, (256,) * int(mask_head_layers), 1),
    )
    # torchvision draws the mask logits layer with Kaiming (fan_out = num_classes): with few
    # classes its logits start in the tens and the mask loss with them. Small weights, as
    # torchvision uses for the box classifier, start it at log 2.
    logits = model.roi_heads.mask_predictor.mask_fcn_logits
    nn.init.normal_(logits.weight, std=0.01)
    nn.init.zeros_(logits.bias)
    return model


def maskrcnn_from_card(card: dict[str, Any]) -> MaskRCNN:
    """An untrained Mask R-CNN shaped as ``card["architecture"]`` describes."""
    arch = dict(card["architecture"])
    return build_maskrcnn(**arch)


def to_model_input(image: np.ndarray, p0_1: float, p99_9: float) -> torch.Tensor:
    """One image as Mask R-CNN's input: normalised to [0, 1] and three channels.

    Parameters
    ----------
    image : (y, x) grey or (y, x, c) with c in {1, 3}, any real dtype
    p0_1, p99_9 : the dataset's 0.1 and 99.9 percentiles (the model card's normalisation)

    Returns
    -------
    torch.Tensor
        float32 ``(3, y, x)``, clipped to [0, 1]; a grey image is replicated to 3 channels.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        arr = np.moveaxis(arr, -1, 0)
    elif arr.ndim == 2:
        arr = arr[None]
    else:
        raise UserError(f"expected a (y, x) or (y, x, c) image, got shape {arr.shape}")
    arr = np.clip((arr - p0_1) / max(p99_9 - p0_1, 1e-12), 0.0, 1.0)
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return torch.from_numpy(np.ascontiguousarray(arr))


def rescale(img: np.ndarray, shape: tuple[int, int], labels: bool) -> np.ndarray:
    """``img`` (h, w[, c]) resized to ``shape`` (h', w'): linear for images (anti-aliased when
    shrinking), nearest for labels (ids and classes kept)."""
    from skimage.transform import resize  # deferred: heavy

    out_shape = (*shape, *img.shape[2:])
    if labels:
        return resize(img, out_shape, order=0, preserve_range=True, anti_aliasing=False).astype(
            img.dtype
        )
    shrink = shape[0] < img.shape[0] or shape[1] < img.shape[1]
    return resize(
        img.astype(np.float32), out_shape, order=1, preserve_range=True, anti_aliasing=shrink
    ).astype(np.float32)


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(h, w) times ``scale``, rounded, at least 1."""
    return max(1, round(h * scale)), max(1, round(w * scale))
