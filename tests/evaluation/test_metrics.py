"""Confusion matrix and scores on hand-built cases; the whole evaluation on the demo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from dlpipe.cli import main
from dlpipe.errors import UserError
from dlpipe.evaluation import confusion_matrix, error_blobs, evaluate, scores


def _zarr(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> zarr.Array:
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype)
    arr[:] = data
    return arr


def test_hand_built_confusion_jaccard_dice() -> None:
    # truth / prediction, 8 voxels, one ignored (255)
    truth = np.array([[[0, 0, 1, 1], [2, 2, 255, 1]]], np.uint8)
    pred = np.array([[[0, 1, 1, 1], [2, 0, 0, 1]]], np.uint8)
    cm = confusion_matrix(pred, truth, n_classes=4, progress=False)
    # rows truth, columns prediction; the ignored voxel is not counted
    assert cm.tolist() == [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert cm.dtype == np.int64
    r = scores(cm, ["a", "b", "c", "d"])
    a, b, c = r["per_class"]["a"], r["per_class"]["b"], r["per_class"]["c"]
    assert a["jaccard"] == pytest.approx(1 / 3)  # tp 1, fp 1, fn 1
    assert a["dice"] == pytest.approx(0.5)
    assert b["jaccard"] == pytest.approx(3 / 4) and b["dice"] == pytest.approx(6 / 7)
    assert b["precision"] == pytest.approx(0.75) and b["recall"] == 1.0
    assert c["jaccard"] == pytest.approx(0.5) and c["precision"] == 1.0 and c["recall"] == 0.5
    assert b["fraction_pred"] == pytest.approx(4 / 7) and b["fraction_true"] == pytest.approx(3 / 7)
    assert r["accuracy"] == pytest.approx(5 / 7)
    # class d is absent from both: Jaccard NaN, excluded from the mean
    assert math.isnan(r["per_class"]["d"]["jaccard"])
    assert r["mean_jaccard"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_perfect_and_disjoint() -> None:
    t = np.zeros((2, 3, 3), np.uint8)
    t[0] = 1
    r = scores(confusion_matrix(t, t, progress=False))
    assert r["mean_jaccard"] == 1.0
    r = scores(confusion_matrix(1 - t, t, progress=False))
    assert r["per_class"]["class_0"]["jaccard"] == 0.0 and r["mean_jaccard"] == 0.0


def test_chunked_equals_numpy_and_z_range(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, (13, 17, 11)).astype(np.uint8)
    p = np.where(rng.random(t.shape) < 0.2, rng.integers(0, 3, t.shape), t).astype(np.uint8)
    zt, zp = _zarr(tmp_path / "t.zarr", t, (4, 8, 8)), _zarr(tmp_path / "p.zarr", p, (5, 8, 8))
    cm = confusion_matrix(zp, zt, z_ranges=[(2, 9), (11, 13)], progress=False)
    sel = np.r_[2:9, 11:13]
    ref = np.zeros((3, 3), np.int64)
    np.add.at(ref, (t[sel].ravel(), p[sel].ravel()), 1)
    assert np.array_equal(cm, ref)


def test_bad_labels_raise() -> None:
    t = np.zeros((1, 2, 2), np.uint8)
    with pytest.raises(UserError, match="only 2 classes"):
        confusion_matrix(t + 3, t, n_classes=2, progress=False)
    with pytest.raises(UserError, match="differs"):
        confusion_matrix(t, np.zeros((1, 2, 3), np.uint8), progress=False)


def test_error_blobs_count_components() -> None:
    t = np.zeros((1, 6, 6), np.uint8)
    p = t.copy()
    p[0, 0:2, 0:2] = 1  # one false-positive blob of class 1, 4 voxels
    p[0, 4, 4] = 1  # a second one, 1 voxel
    t[0, 3, 0] = 1  # one false negative of class 1
    e = error_blobs(p, t, 2, ["m", "f"], connectivity=26)
    assert e["f"]["fp_blobs"] == 2 and e["f"]["fp_max"] == 4
    assert e["f"]["fn_blobs"] == 1 and e["m"]["fp_blobs"] == 1 and e["m"]["fn_blobs"] == 2


def test_evaluate_demo_equals_numpy(demo_dir: Path, tmp_path: Path) -> None:
    truth = tifffile.imread(demo_dir / "labels.tif")
    rng = np.random.default_rng(0)
    pred = truth.copy()
    flip = rng.random(truth.shape) < 0.05
    pred[flip] = rng.integers(0, 3, int(flip.sum()))
    # a prediction as an OME-Zarr-like group with a test split; the truth as TIFF
    root = zarr.open_group(str(tmp_path / "pred.zarr"), mode="w")
    root.attrs["dlpipe"] = {"split": {"train": [0, 40], "val": [40, 48], "test": [50, 64]}}
    arr = root.create_array("labels/phases/0", shape=pred.shape, chunks=(8, 32, 32), dtype="uint8")
    arr[:] = pred
    (tmp_path / "pred.zarr" / ".dlpipe_complete").write_text("")  # as dlpipe writes it
    params = {
        "classes": ["matrix", "fibre", "pore"],
        "ignore_index": 255,
        "error_blobs": True,
        "connectivity": 26,
        "overlays": 2,
        "labels_name": "phases",
    }
    out = tmp_path / "m" / "metrics.json"
    result = evaluate(tmp_path / "pred.zarr", demo_dir / "labels.tif", out, params, progress=False)
    assert result["z_ranges"] == [[50, 64]] and result["z_source"] == "split"
    t, p = truth[50:64].ravel(), pred[50:64].ravel()
    js = []
    for c, name in enumerate(["matrix", "fibre", "pore"]):
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        js.append(inter / union)
        assert result["per_class"][name]["jaccard"] == pytest.approx(inter / union, abs=1e-12)
        dice = 2 * inter / (np.sum(t == c) + np.sum(p == c))
        assert result["per_class"][name]["dice"] == pytest.approx(dice, abs=1e-12)
    assert result["mean_jaccard"] == pytest.approx(np.mean(js), abs=1e-12)
    saved = json.loads(out.read_text())
    assert set(saved) >= {"per_class", "mean_jaccard"}
    assert saved["mean_jaccard"] == pytest.approx(np.mean(js))
    assert out.with_suffix(".csv").read_text().startswith("class,jaccard,dice")
    plots = sorted(p.name for p in (out.parent / "metrics_plots").iterdir())
    assert "jaccard.png" in plots and "confusion.png" in plots and len(plots) == 4
    # --all overrides the split
    everything = evaluate(
        tmp_path / "pred.zarr",
        demo_dir / "labels.tif",
        out,
        params,
        use_all=True,
        progress=False,
        overwrite=True,
    )
    assert everything["voxels"] == truth.size


def test_cli_evaluate_logs_to_mlflow(tmp_path: Path, demo_dir: Path) -> None:
    import mlflow

    results = tmp_path / "res"
    cfg = json.dumps({"results": str(results)})
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--log-level",
                "warning",
                "--config-json",
                cfg,
                "evaluate",
                str(demo_dir / "labels.tif"),
                str(demo_dir / "labels.tif"),
                "--out",
                str(tmp_path / "m.json"),
                "--z-range",
                "3",
                "5",
            ]
        )
    assert exc.value.code == 0
    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dlpipe").experiment_id])
    assert runs[0].data.metrics["mean_jaccard"] == 1.0
    arts = [a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")]
    assert "plots/jaccard.png" in arts and "plots/confusion.png" in arts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.zarr", "missing.tif"], "no such file"),
        (["{labels}", "{labels}", "--z-range", "10", "5"], "z-range"),
        (["{labels}", "{other}"], "differs from truth"),
    ],
)
def test_cli_bad_input_exit_2(
    tmp_path: Path,
    demo_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    other = tmp_path / "o.tif"
    tifffile.imwrite(other, np.zeros((3, 4, 4), np.uint8))
    args = [a.format(labels=demo_dir / "labels.tif", other=other) for a in args]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--log-level",
                "warning",
                "--config-json",
                '{"tracking": {"enabled": false}}',
                "evaluate",
                *args,
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
