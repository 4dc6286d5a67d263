"""Default prediction at the network's speed: whole-region windows, plans from the machine."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zarr
from _predict_helpers import phantom, write_volume

from dlpipe.prediction import load_model, predict_region, predict_volume
from dlpipe.prediction.model import fully_convolutional, receptive_reach
from dlpipe.prediction.run import DEFAULTS, plan_run


def _floor(model_dir, image: np.ndarray) -> np.ndarray:
    """Probabilities of every z-slice (3D: the volume) through the network once, whole."""
    m = load_model(model_dir)
    n = m.card["normalisation"]
    x = (image.astype(np.float32) - n["p0_1"]) / (n["p99_9"] - n["p0_1"])
    probs, _ = predict_region(m.net, x, m.mode, x.shape if m.mode == "3d" else x.shape[1:])
    return probs


@pytest.mark.parametrize(
    ("mode", "shape", "block"),
    [("2d", (3, 96, 104), (2, 40, 48)), ("3d", (24, 40, 48), (16, 16, 24))],
)
def test_whole_windows_with_reach_halo_equal_one_pass(models, tmp_path, mode, shape, block):
    """Blocks smaller than the volume, default halo (the receptive field's reach, 23 -> 24
    for depth 3): every block's voxels get the result of one pass over the whole volume
    (regions on the pooling grid, the volume border zero-padded by the network)."""
    image, _ = phantom(shape, seed=8)
    vol = write_volume(tmp_path / "v.zarr", image)
    out = tmp_path / "p.zarr"
    params = {"block": list(block), "probabilities": True}
    s = predict_volume(models[mode], vol, out, params, progress=False)
    assert s["whole_windows"] and s["complete"]
    assert s["halo"][1:] == [24, 24] and receptive_reach(load_model(models[mode]).card) == 23
    root = zarr.open_group(out, mode="r")
    probs = root["probabilities/0"][:].astype(np.float32)
    floor = _floor(models[mode], image)
    assert np.abs(probs - floor).max() < 2e-3  # float16 storage
    assert (root["labels/phases/0"][:] != np.argmax(floor, axis=0)).mean() < 1e-3


def test_defaults_plan_whole_slices_from_the_machine(models, volume, tmp_path) -> None:
    """No settings: whole z-slices, 2 deep (a divisor of the input chunk's 8 near a
    quarter of the 12 slices), no halo along y, x, torch on every core, the floor's
    labels."""
    out = tmp_path / "p.zarr"
    s = predict_volume(models["2d"], volume, out, {}, progress=False)
    assert s["block"] == [2, 72, 80] and s["halo"] == [0, 0, 0] and s["whole_windows"]
    assert s["blocks"] == 6 and s["windows"] == 12  # one window per z-slice
    assert s["torch_threads"] >= 1 and torch.get_num_threads() == s["torch_threads"]
    image = zarr.open_group(volume, mode="r")["0"][:]
    floor = np.argmax(_floor(models["2d"], image), axis=0)
    assert (zarr.open_group(out, mode="r")["labels/phases/0"][:] != floor).mean() < 1e-3


def _stub(card: dict, mode: str, shape, chunks, window):
    model = SimpleNamespace(card=card, mode=mode, context=1, window=window, classes=["a", "b", "c"])
    info = SimpleNamespace(shape=shape, dtype="uint8", squeeze_z=False)
    info.array = SimpleNamespace(chunks=chunks)
    return model, info


def test_plans_use_sliding_windows_where_the_card_or_the_cost_asks() -> None:
    """Group norm (depends on the window) or ``window: patch``: sliding windows of the
    patch; a deep 3D net whose reach makes whole regions dearer than 0.25-overlap
    windows: sliding too; the demo's 2D net on 64 x 512 x 512: whole slices."""
    arch = {"depth": 4, "base_filters": 16, "norm": "batch"}
    demo, info = _stub({"architecture": arch}, "2d", (64, 512, 512), (64, 64, 64), (128, 128))
    plan = plan_run(demo, info, DEFAULTS)
    assert plan["whole"] and plan["block"] == (16, 512, 512) and plan["halo"] == (0, 0, 0)
    assert not plan_run(demo, info, DEFAULTS | {"window": "patch"})["whole"]
    group = {"architecture": arch | {"norm": "group"}}
    assert not fully_convolutional(group)
    model, info = _stub(group, "2d", (64, 512, 512), (64, 64, 64), (128, 128))
    plan = plan_run(model, info, DEFAULTS)
    assert not plan["whole"] and plan["block"] == (32, 256, 256) and plan["batch"] == 8
    deep, info = _stub({"architecture": arch}, "3d", (512, 512, 512), (64, 64, 64), (32, 64, 64))
    plan = plan_run(deep, info, DEFAULTS | {"memory_budget_mb": None})
    assert not plan["whole"]
    small = {"architecture": {"depth": 3, "base_filters": 8, "norm": "batch"}}
    model, info = _stub(small, "3d", (128, 256, 256), (64, 64, 64), (32, 64, 64))
    plan = plan_run(model, info, DEFAULTS)
    assert plan["whole"] and plan["batch"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_autocast_and_pinned_memory_give_the_cpu_labels(models) -> None:
    """On CUDA: autocast (bfloat16 or float16) and pinned host memory; labels as on the CPU
    but for a few voxels near class ties."""
    image, _ = phantom((4, 64, 64), seed=2)
    m = load_model(models["2d"])
    n = m.card["normalisation"]
    x = (image.astype(np.float32) - n["p0_1"]) / (n["p99_9"] - n["p0_1"])
    cpu, _ = predict_region(m.net, x, "2d", (64, 64))
    m.net.to("cuda")
    gpu, _ = predict_region(m.net, x, "2d", (64, 64), device=torch.device("cuda"), amp=True)
    assert gpu.dtype == np.float32 and np.abs(gpu - cpu).max() < 0.05
    assert (np.argmax(gpu, axis=0) != np.argmax(cpu, axis=0)).mean() < 0.01
