"""The CT image is made slab by slab in bounded memory, and equals the one-slab image."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from dlpipe.synth.imaging import ct_image, ct_pages
from dlpipe.synth.phantom import fibre_composite

IMAGING = {"rings": 4, "ring_amplitude": 0.2, "dtype": "uint16"}


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    return fibre_composite(shape, np.random.default_rng(1))[0]


def test_slabs_give_the_whole_volume_image() -> None:
    labels = _labels((30, 48, 40))
    whole = ct_image(labels, np.random.default_rng(7), **IMAGING)
    thin = ct_image(labels, np.random.default_rng(7), slab_voxels=48 * 40 * 3, **IMAGING)
    assert thin.shape == labels.shape and np.array_equal(whole, thin)


def test_slab_memory_does_not_grow_with_the_volume(tmp_path: Path) -> None:
    """Peak allocation while imaging is a few slabs, not a few float copies of the volume."""
    shape = (192, 64, 64)
    labels = _labels(shape)
    slab = 64 * 64 * 4  # voxels per slab: 1/48 of the volume
    tracemalloc.start()
    try:
        n = sum(
            len(s) for s in ct_pages(labels, np.random.default_rng(0), tmp_path, slab_voxels=slab)
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == shape[0]
    whole_float = 4 * labels.size  # one float32 copy of the volume
    assert peak < whole_float / 3, f"peak {peak} B vs one float32 volume {whole_float} B"
    assert not list(tmp_path.iterdir())  # the scratch counts are gone


def test_many_small_pores_reach_the_fraction() -> None:
    """Placement attempts grow with the volume: 40 000 tiny pores are not cut at 20 000."""
    shape = (32, 256, 256)  # 2 Mvoxel
    labels, _, pores = fibre_composite(
        shape,
        np.random.default_rng(3),
        fibre_fraction=0.05,
        pore_fraction=0.02,
        pore_radius=(0.55, 0.7),
    )
    assert len(pores) > 20000
    assert abs(np.mean(labels == 2) - 0.02) < 0.002
