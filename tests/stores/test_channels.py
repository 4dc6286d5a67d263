"""The one channel rule (dlpipe.stores.channels): grey <-> colour, alpha dropped."""

from __future__ import annotations

import numpy as np
import pytest

from dlpipe.errors import UserError
from dlpipe.stores.channels import CHANNEL_RULE, ChannelView, card_channels, to_channels


def test_grey_replicated_to_rgb() -> None:
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_channels(g, 3)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], g) for c in range(3))


def test_rgb_and_rgba_to_luminance() -> None:
    img = np.zeros((1, 2, 4), np.uint8)
    img[0, 0, :3] = (100, 0, 0)
    img[0, 1, :3] = (10, 20, 30)
    img[..., 3] = 255  # alpha: dropped
    y = to_channels(img, 1)
    assert y.shape == (1, 2) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], [29.9, 0.299 * 10 + 0.587 * 20 + 0.114 * 30], rtol=1e-6)


def test_same_channels_unchanged_and_alpha_dropped() -> None:
    g = np.ones((2, 2), np.uint16)
    assert to_channels(g, 1) is g
    ga = np.ones((2, 2, 2), np.uint8)
    assert to_channels(ga, 1).shape == (2, 2)
    assert to_channels(np.ones((2, 2, 4), np.uint8), 3).shape == (2, 2, 3)


def test_stacks_and_views() -> None:
    stack = np.random.default_rng(0).integers(0, 255, (3, 4, 5, 3)).astype(np.uint8)
    view = ChannelView(stack, 1)
    assert view.shape == (3, 4, 5) and view.dtype == np.float32
    np.testing.assert_allclose(view[1, :2], to_channels(stack[1, :2], 1))
    grey = ChannelView(stack[..., 0], 3)
    assert grey.shape == (3, 4, 5, 3) and grey[0].shape == (4, 5, 3)


def test_card_and_bad_channels() -> None:
    assert card_channels(3) == {"channels": 3, "channel_rule": CHANNEL_RULE}
    with pytest.raises(UserError, match="1 or 3 channels"):
        to_channels(np.ones((2, 2)), 2)
    with pytest.raises(UserError, match="1 to 4 channels"):
        to_channels(np.ones((2, 2, 5)), 1, channel_last=True)
