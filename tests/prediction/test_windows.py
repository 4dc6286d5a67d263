"""Window grid, Gaussian map, dihedral TTA: hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlpipe.prediction import gaussian_map, predict_region, window_starts
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

    from dlpipe.prediction.block import region_bounds
    from dlpipe.prediction.volume import read_region, reflect_index

    assert reflect_index(-3, 7, 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert reflect_index(-2, 2, 1).tolist() == [0, 0, 0, 0]
    vol = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    root = zarr.open_group(tmp_path / "v.zarr", mode="w")
    arr = root.create_array("0", data=vol, chunks=(2, 4, 4))
    pad = 9  # wider than the volume: the mirror repeats, as numpy's does
    ref = np.pad(vol, pad, mode="reflect")
    for lo, hi in [
        ((-2, -3, -4), (3, 4, 5)),
        ((2, 3, 4), (8, 9, 10)),
        ((-9, -1, 0), (9, 7, 16)),
        ((1, 1, 1), (4, 5, 6)),
    ]:
        got = read_region(arr, lo, hi, where=tmp_path, squeeze=False)
        want = ref[tuple(slice(a + pad, b + pad) for a, b in zip(lo, hi, strict=True))]
        assert np.array_equal(got, want), (lo, hi)
    # a border block gets its halo on every side (mirrored there), along z of 2D only k//2
    assert region_bounds(((0, 4), (4, 6), (0, 7)), (5, 6, 7), (2, 3, 3), "3d", (4, 4, 4), 1) == (
        [-2, 1, -3],
        [6, 9, 10],
    )
    assert region_bounds(((0, 2), (0, 6), (0, 7)), (5, 6, 7), (1, 3, 3), "2.5d", (8, 16), 3) == (
        [-1, -3, -4],
        [3, 9, 12],
    )  # x: 13 voxels widened to the 16-wide window


class _SymmetricNet(torch.nn.Module):
    """Two 3x3x3 convolutions whose kernels depend only on how many of (dz, dy, dx) are
    non-zero: equivariant to all 48 axis permutations and flips by construction."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        d = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"))
        nonzero = (d != 0).sum(0)  # (3, 3, 3) in 0..3
        self.c1 = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.c2 = torch.nn.Conv3d(4, 3, 3, padding=1)
        with torch.no_grad():
            for c in (self.c1, self.c2):
                table = 0.1 * torch.randn(c.out_channels, c.in_channels, 4, generator=g)
                c.weight.copy_(table[:, :, nonzero])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x)))


def _count_calls(net: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls


@pytest.mark.parametrize(
    ("window", "usable"), [((12, 12, 12), 48), ((8, 12, 12), 16), ((8, 12, 16), 8)]
)
def test_tta_3d_equivariant_model_and_forward_pass_count(window, usable) -> None:
    from dlpipe.prediction.engine import tta_ops

    assert len(tta_ops("3d", window, 48)) == usable
    net = _SymmetricNet().eval()
    region = np.random.default_rng(0).normal(size=(14, 15, 18)).astype(np.float32)
    x = torch.from_numpy(region[None, None, :12, :12, :12].copy())
    with torch.no_grad():
        for perm, flips in dihedral_ops(3, 48):  # the net really is equivariant
            t = x.flip([2 + a for a in flips]).permute(0, 1, *(2 + p for p in perm))
            want = net(x).flip([2 + a for a in flips]).permute(0, 1, *(2 + p for p in perm))
            assert torch.allclose(net(t), want, atol=1e-5)
    calls = _count_calls(net)
    plain, n = predict_region(net, region, "3d", window, batch_size=3, tta=1)
    assert len(calls) == -(-n // 3) and sum(calls) == n
    calls.clear()
    full, n2 = predict_region(net, region, "3d", window, batch_size=3, tta=48)
    assert n2 == n and len(calls) == usable * -(-n // 3) and sum(calls) == usable * n
    assert np.abs(full - plain).max() < 1e-5
    # a model that is not equivariant gives another result: the test can fail
    torch.manual_seed(1)
    other = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
    a, _ = predict_region(other, region, "3d", window, tta=1)
    b, _ = predict_region(other, region, "3d", window, tta=48)
    assert np.abs(a - b).max() > 1e-2


def test_tta_2d_uses_eight_elements_and_inverts_each() -> None:
    net = torch.nn.Conv2d(3, 2, 3, padding=1)  # 2.5D: 3 slices as channels
    with torch.no_grad():
        net.weight.copy_(
            net.weight + net.weight.flip(2) + net.weight.flip(3) + net.weight.flip(2, 3)
        )
        net.weight.copy_(net.weight + net.weight.transpose(2, 3))  # symmetric kernel
    net.eval()
    calls = _count_calls(net)
    region = np.random.default_rng(1).normal(size=(5, 20, 20)).astype(np.float32)
    plain, n = predict_region(net, region, "2.5d", (16, 16), context=3, batch_size=4, tta=1)
    assert n == 3 * 2 * 2 and len(calls) == 3  # 3 slices x 4 windows, batches of 4
    calls.clear()
    full, _ = predict_region(net, region, "2.5d", (16, 16), context=3, batch_size=4, tta=8)
    assert len(calls) == 8 * 3
    assert np.abs(full - plain).max() < 1e-5
