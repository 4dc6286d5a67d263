"""Each loss against a hand computation, with an ignored voxel that must not count.

Three voxels, two classes: logits (0, 0) -> p = (1/2, 1/2), truth 0; logits (ln 3, 0) ->
p = (3/4, 1/4), truth 1; the third voxel is ignored (255) and has wild logits.
"""

from __future__ import annotations

import math

import pytest
import torch

from dlpipe.errors import UserError
from dlpipe.training import (
    CrossEntropy,
    Focal,
    SoftDice,
    SoftJaccard2,
    inverse_frequency_weights,
    make_loss,
)

LN2 = math.log(2)


def batch():
    logits = torch.tensor([[0.0, 0.0], [math.log(3), 0.0], [50.0, -50.0]]).T  # (C=2, V=3)
    logits = logits.reshape(1, 2, 1, 3).clone().requires_grad_(True)  # (N, C, Y, X)
    target = torch.tensor([[[0, 1, 255]]])
    return logits, target


def test_cross_entropy():
    logits, target = batch()
    loss = CrossEntropy()(logits, target)
    assert float(loss.detach()) == pytest.approx((LN2 + 2 * LN2) / 2)
    loss.backward()
    assert torch.all(logits.grad[..., 2] == 0)  # the ignored voxel gets no gradient


def test_weighted_cross_entropy():
    logits, target = batch()
    # (1 * ln 2 + 3 * ln 4) / (1 + 3)
    assert float(CrossEntropy([1.0, 3.0])(logits, target)) == pytest.approx(7 / 4 * LN2)


def test_soft_dice():
    logits, target = batch()
    d0 = 2 * 0.5 / (1.25 + 1)  # class 0: I = 1/2, Σp = 5/4, Σy = 1
    d1 = 2 * 0.25 / (0.75 + 1)  # class 1: I = 1/4, Σp = 3/4, Σy = 1
    assert float(SoftDice(smooth=0)(logits, target)) == pytest.approx(1 - (d0 + d1) / 2)


def test_soft_jaccard2():
    logits, target = batch()
    j0 = 0.5 / (1 + (0.25 + 0.5625) - 0.5)  # I / (Σy² + Σỹ² − I)
    j1 = 0.25 / (1 + (0.25 + 0.0625) - 0.25)
    assert float(SoftJaccard2(smooth=0)(logits, target)) == pytest.approx(1 - (j0 + j1) / 2)
    # with smoothing s: (I + s) / (... + s)
    s = 1.0
    j0s, j1s = (0.5 + s) / (1.3125 + s), (0.25 + s) / (1.0625 + s)
    assert float(SoftJaccard2(smooth=s)(logits, target)) == pytest.approx(1 - (j0s + j1s) / 2)


def test_focal():
    logits, target = batch()
    # (1/2)² ln 2 and (3/4)² ln 4, averaged
    expected = (0.25 * LN2 + 0.5625 * 2 * LN2) / 2
    assert float(Focal(gamma=2)(logits, target)) == pytest.approx(expected)
    assert float(Focal(gamma=0)(logits, target)) == pytest.approx(1.5 * LN2)  # = CE


def test_weighted_sum_and_all_ignored():
    logits, target = batch()
    loss = make_loss({"ce": 1.0, "dice": 0.5, "focal": 0.0}, n_classes=2)
    assert set(loss.parts) == {"ce", "dice"}
    expected = float(CrossEntropy()(logits, target)) + 0.5 * float(SoftDice()(logits, target))
    assert float(loss(logits, target)) == pytest.approx(expected)
    empty = torch.full_like(target, 255)
    for name in ("ce", "weighted_ce", "dice", "jaccard2", "focal"):
        fn = make_loss({name: 1.0}, n_classes=2, class_weights=[1.0, 2.0])
        value = fn(logits, empty)
        assert float(value) == 0.0 and torch.isfinite(value)


def test_inverse_frequency_and_bad_losses():
    assert inverse_frequency_weights([30, 10]) == pytest.approx([40 / 60, 40 / 20])
    assert inverse_frequency_weights([5, 0, 5]) == pytest.approx([1.0, 0.0, 1.0])
    fn = make_loss({"weighted_ce": 1.0}, n_classes=2, class_counts=[30, 10])
    assert fn.parts["weighted_ce"].weight.tolist() == pytest.approx([2 / 3, 2.0])
    with pytest.raises(UserError, match="unknown loss 'hinge'"):
        make_loss({"hinge": 1.0}, n_classes=2)
    with pytest.raises(UserError, match="no term"):
        make_loss({"ce": 0.0}, n_classes=2)
    with pytest.raises(UserError, match="3 values for 2 classes"):
        make_loss({"ce": 1.0}, n_classes=2, class_weights=[1, 1, 1])
