"""Issue 17 items 1 and 2: an existing output is never replaced without --overwrite; an
incomplete store is refused downstream; a failed run's leftovers do not block the rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
import zarr
from _robust import one_line

TRAIN = [
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--set",
    "steps_per_epoch=2",
    "--set",
    "batch_size=2",
    "--set",
    "patch_size=[16,16]",
    "--set",
    "workers=0",
    "--set",
    "val_max_patches=2",
    "--set",
    "architecture.depth=2",
    "--set",
    "architecture.base_filters=2",
]


def _labels(tmp_path: Path) -> tuple[Path, Path]:
    a = np.zeros((4, 16, 16), np.uint8)
    a[:, 4:8] = 1
    b = a.copy()
    b[:, 8:10] = 2
    tifffile.imwrite(tmp_path / "A.tif", a, photometric="minisblack")
    tifffile.imwrite(tmp_path / "B.tif", b, photometric="minisblack")
    return tmp_path / "A.tif", tmp_path / "B.tif"


def test_evaluate_out_naming_its_input_is_refused(tmp_path: Path, dlpipe) -> None:
    a, _ = _labels(tmp_path)
    before = a.read_bytes()
    for extra in ([], ["--overwrite"]):  # an input is never an output, even with --overwrite
        proc = dlpipe("evaluate", "A.tif", "B.tif", "--all", "--out", "A.tif", *extra)
        assert proc.returncode == 2
        line = one_line(proc)
        assert "A.tif" in line and "also an input" in line
        assert a.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.tif", "B.tif"]


def test_evaluate_out_exists_is_refused_without_overwrite(tmp_path: Path, dlpipe) -> None:
    _labels(tmp_path)
    (tmp_path / "m.json").write_text("my notes\n")
    proc = dlpipe("evaluate", "A.tif", "B.tif", "--all", "--out", "m.json")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "m.json" in line and "output exists" in line and "--overwrite" in line
    assert (tmp_path / "m.json").read_text() == "my notes\n"
    assert not (tmp_path / "m.csv").exists() and not (tmp_path / "m_plots").exists()
    proc = dlpipe("evaluate", "A.tif", "B.tif", "--all", "--out", "m.json", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    # A: 0 everywhere but 1 at x in [4, 8); B: the same plus 2 at x in [8, 10):
    # class 0 is 12 columns in A, 10 in B, 10 in both -> 10/12; class 1 identical -> 1
    per_class = json.loads((tmp_path / "m.json").read_text())["per_class"]
    assert per_class["fibre"]["jaccard"] == 1.0
    assert abs(per_class["matrix"]["jaccard"] - 10 / 12) < 1e-12


def test_postprocess_blobs_exists_is_refused_before_any_work(tmp_path: Path, dlpipe) -> None:
    _labels(tmp_path)
    (tmp_path / "blobs.csv").write_text("keep\n")
    proc = dlpipe("postprocess", "B.tif", "--out", "clean.zarr", "--blobs", "blobs.csv")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "blobs.csv" in line and "output exists" in line
    assert (tmp_path / "blobs.csv").read_text() == "keep\n"
    assert not (tmp_path / "clean.zarr").exists()
    assert not (tmp_path / "clean.changes.csv").exists()


def test_baseline_metrics_exists_is_refused_before_any_work(tmp_path: Path, dlpipe) -> None:
    image = np.random.default_rng(0).integers(0, 255, (6, 16, 16), dtype=np.uint8)
    labels = (image > 127).astype(np.uint8)
    tifffile.imwrite(tmp_path / "v.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "l.tif", labels, photometric="minisblack")
    (tmp_path / "metrics.json").write_text("{}\n")
    proc = dlpipe(
        "baseline", "v.tif", "l.tif", "--out", "otsu.zarr", "--metrics", "metrics.json",
        "--slices", "0,1",
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_line(proc)
    assert "metrics.json" in line and "output exists" in line
    assert (tmp_path / "metrics.json").read_text() == "{}\n"
    assert not (tmp_path / "otsu.zarr").exists()


def test_failed_train_leftover_does_not_block_the_rerun(tiled: Path, tmp_path: Path, dlpipe):
    """lr=1e30: the loss is not finite, exit 2, no card; the rerun proceeds without
    --overwrite; a complete model folder is then refused; predict's inputs are refused
    when incomplete; a failed predict leaves nothing or a leftover that is replaced."""
    proc = dlpipe("train", "vol.zarr", "--out", "model", *TRAIN, "--set", "lr=1e30")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "model" in line and "loss is nan" in line
    assert not (tmp_path / "model" / "card.json").exists()
    proc = dlpipe("train", "vol.zarr", "--out", "model", *TRAIN)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model" / "card.json").is_file()
    proc = dlpipe("train", "vol.zarr", "--out", "model", *TRAIN)
    assert proc.returncode == 2 and "model folder exists" in one_line(proc)
    assert (tmp_path / "model" / "card.json").is_file()

    # predict refused by its memory budget: exit 2 and no PRED.zarr at all
    budget = json.dumps({"tracking": {"enabled": False}, "predict": {"memory_budget_mb": 1}})
    proc = dlpipe("predict", "model", "vol.zarr", "--out", "pred.zarr", config=budget)
    assert proc.returncode == 2 and "memory_budget_mb" in one_line(proc)
    assert not (tmp_path / "pred.zarr").exists()

    # a predict that failed after creating its output (killed, full disk): no marker
    proc = dlpipe("predict", "model", "vol.zarr", "--out", "pred.zarr", "--prepare")
    assert proc.returncode == 0, proc.stderr
    pred = tmp_path / "pred.zarr"
    assert pred.is_dir() and not (pred / ".dlpipe_complete").exists()
    # ... is refused by evaluate and postprocess, naming it; nothing is written
    proc = dlpipe("evaluate", "pred.zarr", "vol.zarr", "--all", "--out", "m.json")
    assert proc.returncode == 2
    line = one_line(proc)
    assert "pred.zarr" in line and "incomplete store" in line
    assert not (tmp_path / "m.json").exists()
    proc = dlpipe("postprocess", "pred.zarr", "--out", "clean.zarr")
    assert proc.returncode == 2 and "pred.zarr" in one_line(proc)
    assert not (tmp_path / "clean.zarr").exists()
    # ... and does not block the rerun (no --overwrite, no --resume)
    proc = dlpipe("predict", "model", "vol.zarr", "--out", "pred.zarr")
    assert proc.returncode == 0, proc.stderr
    assert (pred / ".dlpipe_complete").is_file()
    # the complete output is refused; the user's own Zarr without dlpipe attributes is read
    proc = dlpipe("predict", "model", "vol.zarr", "--out", "pred.zarr")
    assert proc.returncode == 2 and "output exists" in one_line(proc)
    labels = np.asarray(zarr.open_group(str(tiled), mode="r")["labels/phases/0"][:])
    zarr.save_array(str(tmp_path / "mine.zarr"), labels)
    proc = dlpipe("evaluate", "pred.zarr", "mine.zarr", "--all", "--out", "m.json")
    assert proc.returncode == 0, proc.stderr
