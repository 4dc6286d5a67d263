"""The patch loader's chunk cache: same voxels as zarr, bounded, fewer zarr reads."""

from __future__ import annotations

import numpy as np
import zarr

from dlpipe.training.data import ChunkCache


def _array(tmp_path, shape=(10, 20, 24), chunks=(4, 8, 8)):
    data = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    arr = zarr.open_group(tmp_path / "a.zarr", mode="w").create_array("0", data=data, chunks=chunks)
    return data, arr


def test_cached_reads_equal_zarr_reads(tmp_path) -> None:
    data, arr = _array(tmp_path)
    cache = ChunkCache(1 << 20)
    rng = np.random.default_rng(0)
    for _ in range(50):
        lo = [int(rng.integers(0, n)) for n in data.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, data.shape, strict=True)]
        sel = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        assert np.array_equal(cache.read("img", arr, sel), data[sel])
    # fewer leading slices than axes, a stop past the end, numpy arrays go straight through
    assert np.array_equal(cache.read("img", arr, (slice(8, 12),)), data[8:12])
    assert np.array_equal(cache.read("img", data, (slice(1, 3),)), data[1:3])
    assert cache.nbytes <= 1 << 20


def test_hits_misses_and_eviction_by_hand(tmp_path) -> None:
    data, arr = _array(tmp_path)
    chunk_bytes = 4 * 8 * 8 * 4  # int32 chunk (4, 8, 8)
    cache = ChunkCache(3 * chunk_bytes)
    # a (1, 10, 10) patch at y, x = 4..14 spans 2 x 2 chunks: one zarr read, 4 misses
    sel = (slice(0, 1), slice(4, 14), slice(4, 14))
    assert np.array_equal(cache.read("img", arr, sel), data[sel])
    assert (cache.misses, cache.hits) == (4, 0)
    assert len(cache._chunks) == 3 and cache.nbytes == 3 * chunk_bytes  # bounded: 1 dropped
    # the same patch again: the 3 kept chunks hit, the dropped one is read again
    assert np.array_equal(cache.read("img", arr, sel), data[sel])
    assert (cache.misses, cache.hits) == (5, 3)
    # another array never sees these chunks
    assert np.array_equal(
        cache.read("lab", arr, (slice(0, 1), slice(0, 8), slice(0, 8))), data[:1, :8, :8]
    )
    assert cache.misses == 6
    off = ChunkCache(0)
    assert np.array_equal(off.read("img", arr, sel), data[sel]) and off.nbytes == 0


def test_patch_dataset_gives_the_same_items_with_and_without_cache(tmp_path) -> None:
    import torch

    from dlpipe.training import (
        Augment,
        PatchDataset,
        PatchSampler,
        open_source,
        scan_labels,
        write_labelled_volume,
    )

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, size=(12, 40, 48), dtype=np.uint8)
    labels = rng.integers(0, 3, size=image.shape, dtype=np.uint8)
    store = write_labelled_volume(
        tmp_path / "v.zarr", image, labels, classes=["a", "b", "c"], chunks=(4, 16, 16)
    )
    src = open_source(store)
    _, lab = src.open()
    for mode, patch in (("2.5d", (16, 24)), ("3d", (4, 16, 16))):
        sampler = PatchSampler(scan_labels(lab, 3), src.shape, mode, patch, 0.5, [2])
        specs = sampler.epoch(30, src.train, np.random.default_rng(0))
        aug = Augment(shift=0.05, noise=0.02)
        cached = PatchDataset(src, specs, mode, patch, 3, aug)
        plain = PatchDataset(src, specs, mode, patch, 3, aug, cache_mb=0)
        for i in range(len(specs)):
            (a, ma), (b, mb) = cached[i], plain[i]
            assert torch.equal(a, b) and torch.equal(ma, mb)
        assert cached.cache.hits > cached.cache.misses > 0 and plain.cache.nbytes == 0
