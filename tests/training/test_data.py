"""The data layer: store checks, label scan, sampling, oversampling, 2.5D context, workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from dlpipe.errors import UserError
from dlpipe.training import (
    PatchDataset,
    PatchLoader,
    PatchSampler,
    PatchSpec,
    open_source,
    scan_labels,
    sparse_labels,
    sparse_labels_from_demo,
)


def test_open_source_reads_layout(tiny_store):
    path = tiny_store()
    src = open_source(path)
    assert src.shape == (10, 16, 16) and src.train == (0, 6) and src.val == (7, 9)
    assert src.classes == ["matrix", "fibre", "pore"]
    stats = zarr.open_group(str(path), mode="r").attrs["dlpipe"]["statistics"]
    assert src.p0_1 == stats["p0_1"] < stats["p99_9"] == src.p99_9
    (path / ".dlpipe_complete").unlink()
    with pytest.raises(UserError, match="incomplete volume store"):
        open_source(path)


def test_scan_counts_and_bad_values():
    labels = np.full((2, 4, 4), 255, dtype=np.uint8)
    labels[0, :2, :2] = 0
    labels[0, 2:, 2:] = 1
    labels[1, 0, 3] = 2
    arr = zarr.create_array(store={}, shape=labels.shape, chunks=(1, 2, 2), dtype="uint8")
    arr[...] = labels
    index = scan_labels(arr, 3)
    assert index.counts.shape == (2, 2, 2, 3)
    assert index.counts[0, 0, 0].tolist() == [4, 0, 0]
    assert index.counts[0, 1, 1].tolist() == [0, 4, 0]
    assert index.counts[1, 0, 1].tolist() == [0, 0, 1]
    assert index.class_counts((0, 2)).tolist() == [4, 4, 1]
    assert index.labelled_slices((1, 2)).tolist() == [1]
    labels[1, 3, 3] = 7
    arr[...] = labels
    with pytest.raises(UserError, match=r"mask value 7 at \(z=1, y=3, x=3\) is outside the 3"):
        scan_labels(arr, 3)


def test_sparse_labels():
    labels = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2)
    out = sparse_labels(labels, [1])
    assert (out[[0, 2]] == 255).all() and np.array_equal(out[1], labels[1])
    with pytest.raises(UserError, match="outside the volume"):
        sparse_labels(labels, [3])


def test_sparse_labels_from_demo(tmp_path):
    import tifffile

    vol = np.zeros((4, 3, 3), np.uint8)
    lab = np.ones((4, 3, 3), np.uint8)
    tifffile.imwrite(tmp_path / "volume.tif", vol)
    tifffile.imwrite(tmp_path / "labels.tif", lab)
    (tmp_path / "metadata.json").write_text(json.dumps({"annotated_slices": [0, 2]}))
    v, sparse, slices = sparse_labels_from_demo(tmp_path)
    assert slices == [0, 2] and v.shape == (4, 3, 3)
    assert sparse[:, 0, 0].tolist() == [1, 255, 1, 255]


def _dataset(src, mode, patch, context=1, specs=()):
    return PatchDataset(src, list(specs), mode, patch, context)


def test_only_labelled_slices_and_oversampling(tiny_store, make_volume):
    img, lab = make_volume()
    store = tiny_store(image=img, labels=sparse_labels(lab, [1, 4]))
    src = open_source(store)
    _, labels = src.open()
    index = scan_labels(labels, 3)
    rng = np.random.default_rng(0)
    plain = PatchSampler(index, src.shape, "2d", (8, 8), 0.0, [2])
    assert {s.z for s in plain.epoch(50, src.train, rng)} == {1, 4}
    rare = PatchSampler(index, src.shape, "2d", (8, 8), 1.0, [2])
    ds = _dataset(src, "2d", (8, 8), specs=rare.epoch(20, src.train, rng))
    for i in range(len(ds)):
        _, mask = ds[i]
        assert (mask == 2).any()  # every patch holds the rare class
    cube = PatchSampler(index, src.shape, "3d", (4, 8, 8), 0.0, [])
    for s in cube.epoch(30, src.train, rng):  # each 3D patch contains an annotated slice
        assert 0 <= s.z and s.z + 4 <= 6 and (s.z <= 1 < s.z + 4 or s.z <= 4 < s.z + 4)
    grid = plain.grid((0, 10))
    assert len(grid) == 2 * 4 and {s.z for s in grid} == {1, 4}


def test_normalisation_and_context(tiny_store):
    nz = 10
    image = np.broadcast_to(np.arange(nz, dtype=np.float32)[:, None, None] * 10, (nz, 16, 16))
    store = tiny_store(image=np.ascontiguousarray(image))
    src = open_source(store)
    ds = _dataset(src, "2.5d", (8, 8), context=3)
    img, mask, corner = ds.read(PatchSpec(0, 0, 8, 0))
    expect = (np.array([0, 0, 10], np.float32) - src.p0_1) / (src.p99_9 - src.p0_1)
    assert img.shape == (3, 8, 8) and mask.shape == (8, 8) and corner == (0, 0, 8)
    assert np.allclose(img[:, 0, 0], expect)
    img, _, _ = ds.read(PatchSpec(9, 8, 0, 0))
    assert np.allclose(img[:, 0, 0] * (src.p99_9 - src.p0_1) + src.p0_1, [80, 90, 90])
    ds3 = _dataset(src, "3d", (4, 8, 8))
    img, mask, _ = ds3.read(PatchSpec(2, 0, 0, 0))
    assert img.shape == (1, 4, 8, 8) and mask.shape == (4, 8, 8)


def test_workers_read_the_same_patches(tiny_store):
    src = open_source(tiny_store())
    _, labels = src.open()
    sampler = PatchSampler(scan_labels(labels, 3), src.shape, "2d", (8, 8), 0.5, [2])
    specs = sampler.epoch(8, src.train, np.random.default_rng(1))
    from dlpipe.training import Augment

    def batches(workers):
        ds = PatchDataset(src, specs, "2d", (8, 8), 1, Augment(noise=0.1, shift=0.1))
        return list(DataLoader(ds, batch_size=4, num_workers=workers))

    for (a, m), (b, n) in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a, b) and torch.equal(m, n)


class _Pid(PatchDataset):
    """Adds the worker's process id to each item."""

    def __getitem__(self, i):
        img, mask = super().__getitem__(i)
        return img, mask, torch.tensor(os.getpid())


def test_patch_loader_keeps_its_workers_and_matches_a_plain_loader(tiny_store):
    from dlpipe.training import Augment

    src = open_source(tiny_store())
    _, labels = src.open()
    sampler = PatchSampler(scan_labels(labels, 3), src.shape, "2d", (8, 8), 0.5, [2])
    aug = Augment(noise=0.1, shift=0.1)
    loader = PatchLoader(_Pid(src, [], "2d", (8, 8), 1, aug), batch_size=4, workers=1)
    pids = set()
    for epoch in range(2):
        specs = sampler.epoch(8, src.train, np.random.default_rng([1, epoch]))
        plain = DataLoader(PatchDataset(src, specs, "2d", (8, 8), 1, aug), batch_size=4)
        for augment in (True, False):
            got = list(loader(specs, augment))
            assert len(got) == 2
            want = (
                list(plain)
                if augment
                else [
                    (torch.stack([a for a, _ in items]), torch.stack([m for _, m in items]))
                    for items in (
                        [PatchDataset(src, specs, "2d", (8, 8), 1)[k] for k in range(j, j + 4)]
                        for j in (0, 4)
                    )
                ]
            )
            for (a, m, pid), (b, n) in zip(got, want, strict=True):
                assert torch.equal(a, b) and torch.equal(m, n)
                pids.update(pid.tolist())
    assert len(pids) == 1 and os.getpid() not in pids  # one worker served all four passes


def test_workers_auto_reads_in_process_on_the_cpu() -> None:
    from dlpipe.config import validate_config
    from dlpipe.errors import ConfigError
    from dlpipe.training.loop import loader_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loader_workers("auto", cpu) == 0
    assert loader_workers(3, cpu) == 3 and loader_workers(0, cuda) == 0
    cores = len(os.sched_getaffinity(0))
    assert loader_workers("auto", cuda) == max(0, min(4, cores - 1))
    assert validate_config({"train": {"workers": "auto"}})["train"]["workers"] == "auto"
    with pytest.raises(ConfigError, match="workers"):
        validate_config({"train": {"workers": "many"}})
