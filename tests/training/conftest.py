"""Tiny labelled volume stores in the layout of `dlpipe tile`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlpipe.annotations import write_instance_dataset
from dlpipe.training import write_labelled_volume


def make_volume(shape=(10, 16, 16), seed=0):
    """Image and 3-class labels: bright squares (1), a dark rare blob (2) on matrix (0)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    _, ny, nx = shape
    for _ in range(6):
        y, x = rng.integers(0, ny - 4), rng.integers(0, nx - 4)
        labels[:, y : y + 4, x : x + 4] = 1
    labels[:, 2:4, 2:4] = 2
    grey = np.array([100, 200, 20], dtype=np.float32)
    image = grey[labels] + rng.normal(0, 5, shape).astype(np.float32)
    return image.astype(np.float32), labels


@pytest.fixture()
def tiny_store(tmp_path: Path):
    """Build ``VOL.zarr`` (10×16×16, split train 0-6, val 7-8, test 9-10) and return its path."""

    def build(image=None, labels=None, split=None, name="vol.zarr", chunks=(4, 8, 8)):
        img, lab = make_volume()
        image = img if image is None else image
        labels = lab if labels is None else labels
        split = split or {"train": [0, 6], "val": [7, 9], "test": [9, 10], "gap": 1}
        return write_labelled_volume(
            tmp_path / name,
            image,
            labels,
            split=split,
            classes=["matrix", "fibre", "pore"],
            chunks=chunks,
        )

    return build


def tiny_params(**over):
    """The ``train`` defaults shrunk to a few-pixel run (1-2 s per epoch)."""
    from dlpipe.config import defaults

    p = defaults()["train"]
    p.update(
        epochs=2,
        steps_per_epoch=2,
        batch_size=2,
        patch_size=[8, 8],
        workers=0,
        device="cpu",
        val_max_patches=4,
    )
    p["architecture"].update(depth=2, base_filters=2)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(p.get(k), dict):
            p[k].update(v)
        else:
            p[k] = v
    return p


@pytest.fixture(name="make_volume")
def _make_volume_fixture():
    """:func:`make_volume` for tests."""
    return make_volume


@pytest.fixture(name="tiny_params")
def _tiny_params_fixture():
    """:func:`tiny_params` for tests."""
    return tiny_params


# ---------------------------------------------------------------- Mask R-CNN (instances)


def discs(n=6, size=64, k=4, seed=0, empty=()):
    """``n`` frames of ``size`` px with ``k`` discs (class 1) and one square (class 2) each.

    Frames whose index is in ``empty`` have no object. Returns (name, image, semantic,
    instances) tuples.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = []
    for i in range(n):
        inst = np.zeros((size, size), np.uint32)
        sem = np.zeros((size, size), np.uint8)
        if i not in empty:
            for j in range(k):
                r = rng.uniform(5, 8)
                cy, cx = rng.uniform(r, size - r, 2)
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
                inst[m], sem[m] = j + 1, 1
            y, x = rng.integers(0, size - 10, 2)
            inst[y : y + 10, x : x + 10], sem[y : y + 10, x : x + 10] = k + 1, 2
        img = (40 + 150 * (sem > 0) + rng.normal(0, 8, (size, size))).clip(0, 255)
        frames.append((f"img{i}.png", img.astype(np.uint8), sem, inst))
    return frames


def write_discs(path: Path, **kw) -> Path:
    frames = discs(**kw)
    write_instance_dataset(
        path,
        frames,
        classes=["background", "disc", "square"],
        sizes=[f[1].shape for f in frames],
        channels=1,
    )
    return path


def light_params(**over):
    """``train`` defaults for a seconds-long Mask R-CNN run on 64 px tiles."""
    from dlpipe.config import defaults

    p = defaults()["train"]
    p.update(
        model="maskrcnn",
        epochs=2,
        steps_per_epoch=2,
        batch_size=2,
        workers=0,
        device="cpu",
        val_fraction=0.34,
        val_max_patches=2,
        lr=2e-4,
        torch_threads=1,
    )
    p["maskrcnn"].update(
        tile_size=64,
        anchor_sizes=[8, 16, 32, 64, 128],
        rpn_proposals_train=100,
        rpn_proposals_test=100,
        box_batch_size_per_image=32,
        mask_head_layers=1,
        detections_per_image=20,
    )
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(p.get(key), dict):
            p[key].update(value)
        else:
            p[key] = value
    return p


@pytest.fixture()
def instance_store(tmp_path: Path):
    """Build a disc/square instance dataset Zarr (see :func:`discs`) and return its path."""

    def build(name="discs.zarr", **kw):
        return write_discs(tmp_path / name, **kw)

    return build


@pytest.fixture(name="mrcnn_params")
def _mrcnn_params_fixture():
    """:func:`light_params` for tests."""
    return light_params


@pytest.fixture(name="discs")
def _discs_fixture():
    """:func:`discs` for tests."""
    return discs
