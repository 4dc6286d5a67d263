"""Mask R-CNN settings: the CPU/GPU preset, the monitor's tie-break, the pixel sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from dlpipe.config import defaults
from dlpipe.errors import UserError
from dlpipe.training.maskrcnn import PRESETS, apply_preset, monitor_score, pixel_sizes


def test_cpu_preset_fills_defaults_only() -> None:
    p = defaults()["train"]
    got, applied = apply_preset(p)
    assert p["maskrcnn"]["preset"] == "cpu"
    assert got["batch_size"] == 2 and got["steps_per_epoch"] == 25
    assert got["maskrcnn"]["rpn_proposals_train"] == 300
    assert applied["maskrcnn.box_batch_size_per_image"] == 64
    mine = dict(p, steps_per_epoch=7, maskrcnn=dict(p["maskrcnn"], preset="gpu", tile_size=128))
    got, applied = apply_preset(mine)
    assert got["steps_per_epoch"] == 7 and got["maskrcnn"]["tile_size"] == 128  # the user's
    assert got["maskrcnn"]["backbone"] == "resnet50" and got["amp"] is True
    assert "maskrcnn.tile_size" not in applied
    assert set(PRESETS["cpu"]) <= set(PRESETS["gpu"]) | {"maskrcnn.tile_size"}


def test_monitor_tie_break_on_the_validation_loss() -> None:
    rows = [
        {"val_loss": 2.0, "val_ap50": 0.0},
        {"val_loss": 1.0, "val_ap50": 0.0},  # AP 0 everywhere: the lowest loss wins
        {"val_loss": 1.5, "val_ap50": 0.0},
    ]
    scores = [monitor_score(r, "val_ap50") for r in rows]
    assert int(np.argmax(scores)) == 1 and all(-1 < s <= 0 for s in scores)
    assert monitor_score({"val_loss": 9.0, "val_ap50": 0.01}, "val_ap50") > max(scores)
    assert monitor_score({"val_loss": 3.0, "val_f1": math.nan}, "val_f1") == pytest.approx(-0.75)
    assert monitor_score({"val_loss": 0.5, "val_ap50": 0.2}, "val_loss") == -0.5


def test_pixel_sizes(tmp_path) -> None:
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    g.attrs["pixel_size"] = [0.4, 0.4]
    m = defaults()["train"]["maskrcnn"]
    assert pixel_sizes(tmp_path / "d.zarr", m) == {"data": 0.4, "model": 0.4}
    assert pixel_sizes(tmp_path / "d.zarr", m | {"model_pixel_size": 0.8})["model"] == 0.8
    g.attrs["pixel_size"] = None
    assert pixel_sizes(tmp_path / "d.zarr", m) == {"data": None, "model": None}
    with pytest.raises(UserError, match="model_pixel_size needs"):
        pixel_sizes(tmp_path / "d.zarr", m | {"model_pixel_size": 0.8})


def test_training_images_rescaled_in_memory(instance_store) -> None:
    from dlpipe.training import open_instances

    store = instance_store(n=3, size=96)
    plain = open_instances(store, val_fraction=0)
    half = open_instances(store, val_fraction=0, scale=0.5)
    assert half.sizes == [(48, 48)] * 3 and half.arrays["instances"].shape == (3, 48, 48)
    assert half.areas[0][1:].sum() == pytest.approx(plain.areas[0][1:].sum() / 4, rel=0.2)
