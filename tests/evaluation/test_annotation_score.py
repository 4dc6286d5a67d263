"""The annotation score: a prediction scored on the held-out annotated slices only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.annotations.cvat.write import write_cvat_xml
from dlpipe.annotations.placement import place_annotations
from dlpipe.cli import main
from dlpipe.evaluation import evaluate
from dlpipe.evaluation.annotations import annotation_confusion
from dlpipe.training.stores import write_labelled_volume

SHAPE = (6, 4, 5)


def _truth() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[:, :2, :] = 1  # rows y 0-1 are fibre: 10 of the 20 voxels of a z-slice
    return lab


@pytest.fixture()
def scan(tmp_path: Path) -> Path:
    """A scan without dense truth (its labels are named 'other'); z 1, z 3, y 2 annotated."""
    image = np.random.default_rng(0).integers(0, 255, SHAPE).astype(np.uint8)
    store = write_labelled_volume(
        tmp_path / "scan.zarr", image, _truth(), name="other", chunks=(2, 4, 5)
    )
    lab = _truth()
    images = [
        ("scan_z0001.png", 5, 4, [{"type": "mask", "label": "fibre", "mask": lab[1] == 1}]),
        ("scan_z0003.png", 5, 4, [{"type": "mask", "label": "fibre", "mask": lab[3] == 1}]),
        ("scan_y0002.png", 5, 6, []),  # y 2 is all background
    ]
    xml = write_cvat_xml(tmp_path / "annotations.xml", ["fibre"], images)
    place_annotations(xml, store, classes=["fibre"], empty="background")
    return store


def _prediction(path: Path) -> Path:
    pred = _truth()
    pred[3, 1, 3:5] = 0  # two fibre voxels of the test slice z 3 missed
    pred[1] = 1  # the training slice z 1 all wrong: not scored
    arr = zarr.create_array(str(path), shape=SHAPE, chunks=(2, 4, 5), dtype="uint8")
    arr[:] = pred
    return path


def test_score_on_the_test_slice_by_hand(scan: Path, tmp_path: Path) -> None:
    # 3 slices ordered z1, z3, y2: the test slice is the centre one, z 3
    meta = json.loads((scan / "zarr.json").read_text())["attributes"]["dlpipe"]
    assert meta["annotations"]["test"] == {"z": [3]}
    pred = _prediction(tmp_path / "pred.zarr")
    evaluate(pred, scan, tmp_path / "m.json", {"labels_name": "phases"})
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["kind"] == "annotation score" and result["test_slices"] == {"z": [3]}
    # fibre: TP 8, FN 2, FP 0 -> 0.8; background: TP 10, FP 2 -> 10/12
    assert result["per_class"]["fibre"]["jaccard"] == pytest.approx(0.8)
    assert result["per_class"]["background"]["jaccard"] == pytest.approx(10 / 12)
    assert result["mean_jaccard"] == pytest.approx((0.8 + 10 / 12) / 2)
    assert result["voxels"] == 20
    assert (tmp_path / "m_plots" / "overlay_z0003.png").is_file()


def test_crossing_slices_count_once_and_255_is_skipped() -> None:
    ann = np.full((3, 2, 2), 255, np.uint8)
    ann[1] = [[0, 1], [1, 1]]
    ann[:, 0, :] = [[0, 0], [0, 1], [1, 1]]  # y 0 crosses z 1 on the line (z 1, y 0)
    pred = np.ones((3, 2, 2), np.uint8)
    cm = annotation_confusion(pred, ann, {"z": [1], "y": [0]}, 2)
    # z 1: truth 0,1,1,1 -> row 0: 1 voxel, row 1: 3; y 0 adds z 0 (0, 0) and z 2 (1, 1)
    np.testing.assert_array_equal(cm, [[0, 3], [0, 5]])


def test_cli_gives_the_annotation_score_without_dense_truth(
    scan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = _prediction(tmp_path / "pred.zarr")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config-json",
                '{"tracking": {"enabled": false}}',
                "evaluate",
                str(pred),
                str(scan),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
    assert exc.value.code == 0
    out = capsys.readouterr()
    assert "annotation score" in (out.out + out.err) and "0.817" in (out.out + out.err)
