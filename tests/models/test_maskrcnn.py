"""The Mask R-CNN builder: backbones, input convention, no internal resize, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlpipe.errors import UserError
from dlpipe.models import build_maskrcnn, maskrcnn_from_card, to_model_input


def test_grey_input_is_normalised_and_replicated() -> None:
    img = np.array([[10, 20], [30, 110]], dtype=np.uint16)
    x = to_model_input(img, 10.0, 110.0)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 2)
    expected = np.array([[0.0, 0.1], [0.2, 1.0]], dtype=np.float32)
    for c in range(3):
        np.testing.assert_allclose(x[c].numpy(), expected, atol=1e-7)
    # values beyond the percentiles are clipped
    assert float(to_model_input(np.array([[0, 500]]), 10, 110).max()) == 1.0
    assert float(to_model_input(np.array([[0, 500]]), 10, 110).min()) == 0.0


def test_rgb_input_keeps_channels() -> None:
    img = np.zeros((4, 5, 3), dtype=np.uint8)
    img[..., 1] = 255
    x = to_model_input(img, 0, 255)
    assert x.shape == (3, 4, 5)
    assert float(x[1].min()) == 1.0 and float(x[0].max()) == 0.0


def test_bad_image_shape_is_a_user_error() -> None:
    with pytest.raises(UserError, match="shape"):
        to_model_input(np.zeros((2, 3, 4, 5)), 0, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "vgg"}, "backbone"),
        ({"norm": "layer"}, "norm"),
        ({"anchor_sizes": (8, 16)}, "anchor_sizes"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_maskrcnn(3, **kwargs)
    with pytest.raises(UserError, match="2 classes"):
        build_maskrcnn(1)


def test_no_internal_resize_and_card_round_trip() -> None:
    """Fed a tile of tile_size, the detections live in that tile's pixel grid."""
    card = {"architecture": {"num_classes": 2, "backbone": "resnet18", "tile_size": 64}}
    torch.manual_seed(0)
    model = maskrcnn_from_card(card).eval()
    assert model.transform.min_size == (64,) and model.transform.max_size == 64
    with torch.no_grad():
        out = model([to_model_input(np.random.default_rng(0).random((64, 64)), 0, 1)])[0]
    assert out["masks"].shape[1:] == (1, 64, 64)
    assert out["boxes"].shape[1] == 4
    if len(out["boxes"]):
        assert float(out["boxes"].max()) <= 64
    # the same architecture twice gives identical state dict keys and shapes
    other = build_maskrcnn(2, backbone="resnet18", tile_size=64)
    a, b = model.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)


def test_mobilenet_uses_three_anchor_levels() -> None:
    model = build_maskrcnn(3, backbone="mobilenet_v3_large", tile_size=64)
    sizes = model.rpn.anchor_generator.sizes
    assert sizes == ((16,), (32,), (64,))
