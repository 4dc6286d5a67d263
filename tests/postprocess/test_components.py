"""Chunked connected components equal scipy.ndimage.label on the whole array."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from dlpipe.errors import UserError
from dlpipe.postprocess import blob_table, label_chunked, structure


def _same_partition(ids: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> bool:
    pairs = np.unique(np.stack([ids[mask], ref[mask]], axis=1), axis=0)
    return len(pairs) == len(np.unique(ids[mask])) == len(np.unique(ref[mask]))


def test_blob_across_eight_chunk_corners_is_one(tmp_path: Path) -> None:
    vol = np.zeros((16, 16, 16), np.uint8)
    vol[6:10, 6:10, 6:10] = 2  # a cube centred on the corner shared by 8 chunks of 8^3
    vol[0, 0, 0] = 2  # and a separate voxel
    arr = zarr.create_array(
        str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(8, 8, 8), dtype="uint8"
    )
    arr[:] = vol
    comp = label_chunked(arr, [2], connectivity=6, stats=True, progress=False)
    assert comp.count == 2
    assert sorted(comp.voxels[1:].tolist()) == [1, 64]
    big = int(np.argmax(comp.voxels))
    assert np.unique(comp.ids[6:10, 6:10, 6:10]).tolist() == [big]
    assert comp.bbox[big].tolist() == [6, 6, 6, 10, 10, 10]
    table = blob_table(comp)
    row = big - 1
    assert table["centroid_z"][row] == pytest.approx(7.5)
    assert table["slices"][row] == 4
    assert table["equivalent_diameter"][row] == pytest.approx((6 * 64 / np.pi) ** (1 / 3))


def test_diagonal_touch_across_corner_depends_on_connectivity() -> None:
    vol = np.zeros((8, 8, 8), np.uint8)
    vol[3, 3, 3] = 1
    vol[4, 4, 4] = 1  # touches only by a corner, across the corner of 8 blocks of 4^3
    assert label_chunked(vol, [1], connectivity=26, chunks=(4, 4, 4), progress=False).count == 1
    assert label_chunked(vol, [1], connectivity=18, chunks=(4, 4, 4), progress=False).count == 2
    vol[4, 4, 4] = 0
    vol[4, 4, 3] = 1  # an edge neighbour
    assert label_chunked(vol, [1], connectivity=18, chunks=(4, 4, 4), progress=False).count == 1
    assert label_chunked(vol, [1], connectivity=6, chunks=(4, 4, 4), progress=False).count == 2


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_random_volume_matches_scipy(connectivity: int) -> None:
    rng = np.random.default_rng(connectivity)
    smooth = ndimage.gaussian_filter(rng.random((23, 29, 19)), 1.2)
    vol = np.digitize(smooth, np.quantile(smooth, [0.4, 0.8])).astype(np.uint8)
    comp = label_chunked(
        vol, [0, 1, 2], connectivity=connectivity, chunks=(5, 7, 6), progress=False
    )
    total = 0
    for p in (0, 1, 2):
        ref, n = ndimage.label(vol == p, structure(3, connectivity))
        total += n
        assert _same_partition(comp.ids, ref, vol == p)
        assert sorted(comp.voxels[1:][comp.phase[1:] == p]) == sorted(np.bincount(ref.ravel())[1:])
    assert comp.count == total


def test_2d_connectivity() -> None:
    img = np.zeros((10, 10), np.uint8)
    img[4, 4] = img[5, 5] = 1
    assert label_chunked(img, [1], connectivity=8, chunks=(5, 5), progress=False).count == 1
    assert label_chunked(img, [1], connectivity=4, chunks=(5, 5), progress=False).count == 2
    with pytest.raises(UserError, match="connectivity 6"):
        label_chunked(img, [1], connectivity=6)


@pytest.mark.parametrize(("connectivity", "chunks"), [(26, (3, 5, 4)), (6, (4, 3, 7))])
def test_many_layers_match_scipy(connectivity: int, chunks: tuple[int, int, int]) -> None:
    """Borders are merged layer by layer along z: many thin layers, diagonals across corners."""
    rng = np.random.default_rng(7)
    smooth = ndimage.gaussian_filter(rng.random((31, 17, 22)), 1.0)
    vol = np.digitize(smooth, np.quantile(smooth, [0.45, 0.85])).astype(np.uint8)
    comp = label_chunked(
        vol, [0, 1, 2], connectivity=connectivity, chunks=chunks, stats=True, progress=False
    )
    total = 0
    for p in (0, 1, 2):
        ref, n = ndimage.label(vol == p, structure(3, connectivity))
        total += n
        assert _same_partition(comp.ids, ref, vol == p)
    assert comp.count == total
    img = vol[5]
    for conn in (4, 8):
        ref_count = sum(ndimage.label(img == p, structure(2, conn))[1] for p in (0, 1, 2))
        assert (
            label_chunked(img, [0, 1, 2], connectivity=conn, chunks=(3, 4), progress=False).count
            == ref_count
        )


def test_memory_does_not_grow_with_depth() -> None:
    """The border faces live one layer at a time: peak memory of a 4x deeper volume (fibres
    along z, few components) stays about the same (it held every border plane before)."""

    def peak(depth: int) -> int:
        vol = np.zeros((depth, 256, 256), np.uint8)
        yy, xx = np.mgrid[0:256, 0:256]
        vol[:, (yy % 16 < 5) & (xx % 16 < 5)] = 1
        tracemalloc.start()
        try:
            label_chunked(vol, [0, 1], chunks=(8, 64, 64), out=False, progress=False)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, deep = peak(32), peak(128)
    assert deep < 1.5 * small, f"peak {deep} B at depth 128 vs {small} B at depth 32"
