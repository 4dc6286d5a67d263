"""Classical baselines on the demo, evaluated by the evaluation code; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from dlpipe.baselines import baseline, held_out_ranges, multi_otsu
from dlpipe.cli import main
from dlpipe.config import defaults


def test_held_out_ranges() -> None:
    assert held_out_ranges([0, 3, 4, 9], 10) == [(1, 3), (5, 9)]
    assert held_out_ranges([], 3) == [(0, 3)]


def test_multi_otsu_on_three_levels() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (4, 16, 16)).astype(np.uint8)
    grey = np.array([120, 200, 30])[truth] + rng.normal(0, 5, truth.shape)  # 1 bright, 2 dark
    pred = multi_otsu(grey, truth, [0, 1], 3, {"sigma": 0})
    assert (pred == truth).mean() > 0.99


def test_demo_baselines_evaluated(demo_dir: Path, tmp_path: Path) -> None:
    cfg = defaults()
    meta = demo_dir / "metadata.json"
    params = cfg["baselines"] | {
        "rf": cfg["baselines"]["rf"] | {"n_estimators": 10, "max_samples": 5000}
    }
    res = baseline(
        demo_dir / "volume.tif",
        demo_dir / "labels.tif",
        tmp_path / "rf.zarr",
        tmp_path / "rf.json",
        params,
        cfg["evaluation"],
        method="rf",
        metadata=meta,
    )
    train = json.loads(meta.read_text())["annotated_slices"]
    assert res["training_slices"] == train
    assert not any(z0 <= z < z1 for z in train for z0, z1 in res["z_ranges"])
    assert res["per_class"]["fibre"]["jaccard"] > 0.8 and res["mean_jaccard"] > 0.6
    # the written prediction re-evaluated by hand gives the same fibre Jaccard
    pred = zarr.open_group(str(tmp_path / "rf.zarr"), mode="r")["labels/phases/0"][:]
    truth = tifffile.imread(demo_dir / "labels.tif")
    sel = np.concatenate([np.arange(a, b) for a, b in res["z_ranges"]])
    t, p = truth[sel] == 1, pred[sel] == 1
    assert res["per_class"]["fibre"]["jaccard"] == pytest.approx((t & p).sum() / (t | p).sum())
    assert json.loads((tmp_path / "rf.json").read_text())["mean_jaccard"] == pytest.approx(
        res["mean_jaccard"]
    )


def test_cli_otsu_and_bad_slices(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "--log-level",
        "warning",
        "--config-json",
        '{"tracking": {"enabled": false}}',
        "baseline",
        str(demo_dir / "volume.tif"),
        str(demo_dir / "labels.tif"),
    ]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *base,
                "--out",
                str(tmp_path / "o.zarr"),
                "--metrics",
                str(tmp_path / "o.json"),
                "--method",
                "otsu",
                "--slices",
                "5,20,40",
            ]
        )
    assert exc.value.code == 0
    result = json.loads((tmp_path / "o.json").read_text())
    assert result["per_class"]["fibre"]["jaccard"] > 0.7
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *base,
                "--out",
                str(tmp_path / "x.zarr"),
                "--metrics",
                str(tmp_path / "x.json"),
                "--slices",
                "5,999",
            ]
        )
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "outside the volume" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out", str(tmp_path / "y.zarr"), "--metrics", str(tmp_path / "y.json")])
    assert exc.value.code == 2 and "no training slices" in capsys.readouterr().err


def test_blocks_are_segmented_one_layer_at_a_time() -> None:
    """The label volume is never whole in memory: each chunk layer is segmented when its
    first block is written, and no slice of a later layer before."""
    from dlpipe.baselines.classical import _segmented_blocks

    done: list[int] = []

    def segment(z: int) -> np.ndarray:
        done.append(z)
        return np.full((10, 12), z, np.uint8)

    out = np.zeros((11, 10, 12), np.uint8)
    for sl, block in _segmented_blocks(segment, (11, 10, 12), (4, 5, 6), "otsu"):
        assert max(done) < sl[0].stop  # nothing beyond this block's layer yet
        out[sl] = block
    assert done == list(range(11))  # every slice once
    assert np.array_equal(out, np.arange(11, dtype=np.uint8)[:, None, None] + 0 * out)
