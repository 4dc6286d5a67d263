"""The modular U-Net: shapes in 2D/2.5D/3D, options, hand-counted parameters."""

from __future__ import annotations

import pytest
import torch

from dlpipe.errors import UserError
from dlpipe.models import UNet, build_unet, count_parameters


@pytest.mark.parametrize(
    ("dim", "cin", "shape", "kw"),
    [
        (2, 1, (16, 24), {}),
        (2, 3, (16, 16), {"block": "residual", "norm": "group", "upsampling": "interp"}),
        (3, 1, (8, 16, 8), {"dropout": 0.2, "input_noise": 0.1, "norm": "none"}),
        (3, 1, (4, 8, 8), {"block": "residual", "upsampling": "interp", "growth": 1.5}),
    ],
)
def test_output_shape(dim, cin, shape, kw):
    torch.manual_seed(0)
    net = UNet(dim=dim, in_channels=cin, n_classes=3, depth=3, base_filters=4, **kw)
    x = torch.randn(2, cin, *shape)
    assert net(x).shape == (2, 3, *shape)
    net.eval()
    assert net(x).shape == (2, 3, *shape)


def test_parameter_count_by_hand():
    # depth 1, 2 filters, no norm: conv 1->2 (3x3, bias) 20 + conv 2->2 38 + head 2->2 (1x1) 6
    assert count_parameters(UNet(2, 1, 2, depth=1, base_filters=2, norm="none")) == 64
    # depth 2: level 1 58, level 2 (2->4: 76, 4->4: 148) 224, transpose 4->2 (2x2) 34,
    # decoder (4->2: 74, 2->2: 38) 112, head 6
    assert count_parameters(UNet(2, 1, 2, depth=2, base_filters=2, norm="none")) == 434
    # 3D level: conv 1->2 (3x3x3) 56 + 2->2 110 + head 6
    assert count_parameters(UNet(3, 1, 2, depth=1, base_filters=2, norm="none")) == 172


def test_noise_layer_only_while_training():
    net = UNet(2, 1, 2, depth=1, base_filters=2, norm="none", input_noise=1.0)
    x = torch.zeros(1, 1, 4, 4)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_build_from_card_and_bad_options():
    arch = {"dim": 2, "in_channels": 1, "n_classes": 2, "depth": 2, "base_filters": 2}
    assert count_parameters(build_unet(arch)) == count_parameters(UNet(**arch))
    with pytest.raises(UserError, match="unknown architecture option 'bogus'"):
        build_unet({"bogus": 1})
    with pytest.raises(UserError, match="unknown block 'dense'"):
        UNet(block="dense")
