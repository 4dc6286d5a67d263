"""Window grid, Gaussian map, dihedral TTA: hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlpipe.prediction import gaussian_map, window_starts
from dlpipe.prediction.engine import _forward, dihedral_ops
from dlpipe.prediction.windows import block_bounds, block_grid


def test_window_starts_match_monai_grid() -> None:
    # step int(32 * 0.75) = 24; last window snapped to 100 - 32 = 68
    assert window_starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert window_starts(32, 32, 0.25) == [0]
    assert window_starts(56, 32, 0.25) == [0, 24]
    with pytest.raises(ValueError):
        window_starts(31, 32, 0.25)


def test_gaussian_map_peak_symmetry_floor() -> None:
    g = gaussian_map((8, 8))
    assert g.shape == (8, 8) and g.dtype == np.float32
    assert np.allclose(g, g[::-1]) and np.allclose(g, g.T)
    # sigma = 8 * 0.125 = 1 voxel, centre 3.5: g[0, 3] / g[3, 3] = exp(-0.5 * (3.5² - 0.5²))
    assert g[3, 3] == pytest.approx(1.0)
    assert g[0, 3] == pytest.approx(np.exp(-6.0), rel=1e-5)
    assert g[0, 0] == pytest.approx(1e-3)  # exp(-12.25) clamped
    assert g.min() >= 1e-3


def test_block_grid_and_bounds() -> None:
    assert block_grid((5, 10, 3), (2, 4, 3)) == [(z, y, 0) for z in range(3) for y in range(3)]
    assert block_bounds((2, 2, 0), (5, 10, 3), (2, 4, 3)) == ((4, 5), (8, 10), (0, 3))


def test_dihedral_counts_and_tta_equivariant_identity() -> None:
    assert len(dihedral_ops(2, 8)) == 8 and len(dihedral_ops(3, 48)) == 48
    assert len({o for o in dihedral_ops(3, 48)}) == 48
    assert dihedral_ops(2, 1) == [((0, 1), ())]
    # a per-pixel network (1x1 conv) is equivariant: TTA average equals the plain output
    net = torch.nn.Conv2d(1, 3, 1)
    x = torch.randn(2, 1, 6, 6)
    plain = _forward(net, x, dihedral_ops(2, 1), amp=False)
    tta = _forward(net, x, dihedral_ops(2, 8), amp=False)
    assert torch.allclose(plain, tta, atol=1e-6)


def test_read_region_mirrors_like_numpy_reflect(tmp_path) -> None:
    import zarr

    from dlpipe.prediction.run import region_bounds
    from dlpipe.prediction.volume import read_region, reflect_index

    assert reflect_index(-3, 7, 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert reflect_index(-2, 2, 1).tolist() == [0, 0, 0, 0]
    vol = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    root = zarr.open_group(tmp_path / "v.zarr", mode="w")
    arr = root.create_array("0", data=vol, chunks=(2, 4, 4))
    pad = 9  # wider than the volume: the mirror repeats, as numpy's does
    ref = np.pad(vol, pad, mode="reflect")
    for lo, hi in [((-2, -3, -4), (3, 4, 5)), ((2, 3, 4), (8, 9, 10)), ((-9, -1, 0), (9, 7, 16)),
                   ((1, 1, 1), (4, 5, 6))]:
        got = read_region(arr, lo, hi, where=tmp_path, squeeze=False)
        want = ref[tuple(slice(a + pad, b + pad) for a, b in zip(lo, hi, strict=True))]
        assert np.array_equal(got, want), (lo, hi)
    # a border block gets its halo on every side (mirrored there), along z of 2D only k//2
    assert region_bounds(((0, 4), (4, 6), (0, 7)), (5, 6, 7), (2, 3, 3), "3d", (4, 4, 4), 1) == (
        [-2, 1, -3], [6, 9, 10])
    assert region_bounds(((0, 2), (0, 6), (0, 7)), (5, 6, 7), (1, 3, 3), "2.5d", (8, 16), 3) == (
        [-1, -3, -4], [3, 9, 12])  # x: 13 voxels widened to the 16-wide window
