"""`dlpipe slices --suggest PRED.zarr --count N`: the most uncertain slices to annotate next."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from dlpipe.annotations.suggest import pick_uncertain
from dlpipe.config import defaults
from dlpipe.prediction import predict_volume
from dlpipe.synth import make_demo
from dlpipe.training import sparse_labels_from_demo, train, write_labelled_volume

RunCli = Callable[..., tuple[int, str]]


def test_pick_by_hand() -> None:
    unc = {"z": [0.1, 0.9, 0.85, 0.2, 0.7, 0.6], "y": [0.95, 0.1]}
    # the most uncertain first; z 2 is within 2 of z 1; y is not asked for
    assert pick_uncertain(unc, 3, ["z"], min_gap=2) == [("z", 1, 0.9), ("z", 4, 0.7)]
    # annotated slices are never picked; the others keep min_gap // 2 = 1 from them
    assert pick_uncertain(unc, 2, ["z"], annotated={"z": [1]}, min_gap=2) == [
        ("z", 2, 0.85),
        ("z", 4, 0.7),
    ]
    # min_gap 4: z 0 and z 2 lie within 2 of the annotated z 1, z 3 and z 5 within 4 of z 4
    assert pick_uncertain(unc, 2, ["z"], annotated={"z": [1]}, min_gap=4) == [("z", 4, 0.7)]
    assert pick_uncertain(unc, 2, ["z", "y"], min_gap=1) == [("y", 0, 0.95), ("z", 1, 0.9)]


def _record(store: Path, slices: dict) -> None:
    """The ``dlpipe.annotations`` record of annotations placed at ``slices``."""
    root = zarr.open_group(str(store), mode="r+")
    meta = dict(root.attrs["dlpipe"])
    meta["annotations"] = {"name": "annotations", "slices": slices}
    root.attrs["dlpipe"] = meta


def _write_uncertainty(pred: Path, unc: dict) -> None:
    root = zarr.open_group(str(pred), mode="w")
    root.attrs["dlpipe"] = {"uncertainty": {"measure": "1 - margin", **unc}}


def test_cli_writes_the_suggested_slices(run_cli: RunCli, tmp_path: Path) -> None:
    vol = np.random.default_rng(0).integers(0, 255, (10, 6, 7)).astype(np.uint8)
    store = write_labelled_volume(
        tmp_path / "scan.zarr", vol, np.zeros(vol.shape, np.uint8), name="dense"
    )
    _record(store, {"z": [5]})
    pred = tmp_path / "pred.zarr"
    z = [0.1, 0.2, 0.3, 0.4, 0.8, 0.9, 0.5, 0.6, 0.7, 0.65]
    _write_uncertainty(pred, {"z": z, "y": [0.0] * 6, "x": [0.0] * 7})
    task = tmp_path / "task"
    code, err = run_cli(
        "slices", store, "--suggest", pred, "--count", "2", "--min-gap", "2", "--out", task
    )
    assert code == 0, err
    # z 5 (0.9) is annotated; z 4 (0.8), then z 8 (0.7): z 9 and z 7 are within 2 of it
    manifest = json.loads((task / "slices.json").read_text())
    assert {n: e["index"] for n, e in manifest["slices"].items()} == {
        "scan_z0004.png": 4,
        "scan_z0008.png": 8,
    }
    assert manifest["slices"]["scan_z0008.png"]["uncertainty"] == pytest.approx(0.7)
    bad = tmp_path / "bad.zarr"
    _write_uncertainty(bad, {"z": z[:4], "y": [0.0] * 6, "x": [0.0] * 7})
    code, err = run_cli("slices", store, "--suggest", bad, "--count", "2", "--out", tmp_path / "t2")
    assert code == 2 and "z-slices" in err and not (tmp_path / "t2").exists()


def _jaccard(pred: np.ndarray, truth: np.ndarray, n: int = 3) -> float:
    """Jaccard of a slice pooled over the classes: sum of intersections / sum of unions
    (a per-class mean would follow whether the slice happens to hold a pore)."""
    inter = sum(((pred == c) & (truth == c)).sum() for c in range(n))
    union = sum(((pred == c) | (truth == c)).sum() for c in range(n))
    return float(inter / union)


def test_suggested_slices_are_worse_than_the_mean_slice(run_cli: RunCli, tmp_path: Path) -> None:
    """Tiny demo: 2D U-Net from 4 annotated slices; the 3 slices suggested from its
    prediction have a lower Jaccard against the synth truth than the mean slice."""
    params = defaults()["synth"] | {"shape": [32, 64, 64], "annotated_slices": 4}
    demo = tmp_path / "demo"
    make_demo(demo, params)
    volume, sparse, slices = sparse_labels_from_demo(demo)
    truth = tifffile.imread(demo / "labels.tif")
    store = write_labelled_volume(
        tmp_path / "demo.zarr",
        volume,
        sparse,
        split={"train": [0, 32], "val": [0, 0], "test": [0, 0], "gap": 0},
        chunks=(8, 64, 64),
    )
    _record(store, {"z": slices})
    p = defaults()["train"]
    p.update(epochs=4, steps_per_epoch=25, batch_size=4, patch_size=[32, 32], device="cpu")
    p.update(workers=0, torch_threads=2)
    p["architecture"].update(depth=3, base_filters=8)
    train(store, tmp_path / "model", p)
    pred = tmp_path / "pred.zarr"
    predict_volume(tmp_path / "model", store, pred, {"block": [32, 64, 64]}, progress=False)
    task = tmp_path / "task"
    code, err = run_cli("slices", store, "--suggest", pred, "--count", "3", "--out", task)
    assert code == 0, err
    picked = [e["index"] for e in json.loads((task / "slices.json").read_text())["slices"].values()]
    labels = np.asarray(zarr.open_group(str(pred), mode="r")["labels/phases/0"])
    per_slice = [_jaccard(labels[z], truth[z]) for z in range(32)]
    assert len(picked) == 3 and not set(picked) & set(slices)
    assert np.mean([per_slice[z] for z in picked]) < np.mean(per_slice)
