"""Tiny labelled volume stores in the layout of `dlpipe tile`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
