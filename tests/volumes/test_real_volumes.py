"""Real CT volumes (qim3d fibres and cement) and the ISBI 2012 slice folder, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from dlpipe.errors import UserError
from dlpipe.stores import open_volume
from dlpipe.volumes import downsample_mean, downsample_mode


def _ome_nodes(path: Path) -> dict[str, object]:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    return {
        str(n.zarr.path).rstrip("/").removeprefix(str(path)).lstrip("/") or ".": n
        for n in Reader(parse_url(str(path)))()
    }


def _check_stats(stats: dict, vol: np.ndarray) -> None:
    x = vol.astype(np.float64)
    assert stats["min"] == vol.min() and stats["max"] == vol.max()
    assert stats["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(x.std(), rel=1e-12)
    assert stats["p0_1"] == pytest.approx(np.percentile(x, 0.1), abs=1e-9)
    assert stats["p99_9"] == pytest.approx(np.percentile(x, 99.9), abs=1e-9)
    h = stats["histogram"]
    assert sum(h["counts"]) == vol.size and len(h["edges"]) == len(h["counts"]) + 1


def test_fibres_round_trip_stats_pyramid_ngff(shared_data: Path, tmp_path: Path, run_tile) -> None:
    src = shared_data / "qim3d/qim3d/examples/fibers_150x150x150.tif"
    vol = tifffile.imread(src)
    lab = (vol > 140).astype(np.uint8) + (vol < 60).astype(np.uint8) * 2
    tifffile.imwrite(tmp_path / "labels.tif", lab)
    out = tmp_path / "fibres.zarr"
    # a budget below one slab: slabs of 16 slices, 10 of them (the last one of 6)
    code, err = run_tile(
        src,
        "--out",
        out,
        "--labels",
        tmp_path / "labels.tif",
        "--chunks",
        "16",
        "32",
        "32",
        "--levels",
        "4",
        "--voxel-size",
        "2",
        "0.5",
        "0.5",
        "--memory-budget-mb",
        "64",
        "--split",
        "0.6",
        "0.2",
        "0.2",
        "--gap",
        "5",
    )
    assert code == 0, err
    opened = open_volume(out)
    image, labels, attrs = opened.image, opened.labels, opened.attrs
    np.testing.assert_array_equal(image[:], vol)
    np.testing.assert_array_equal(labels[:], lab)
    _check_stats(attrs["statistics"], vol)
    assert attrs["statistics"]["exact_percentiles"] is True
    # 150 - 2*5 = 140 usable: 84 / 28 / 28
    assert attrs["split"] == {"train": [0, 84], "val": [89, 117], "test": [122, 150], "gap": 5}
    assert json.loads((out / "split.json").read_text()) == attrs["split"]
    assert attrs["labels"]["counts"] == {str(v): int((lab == v).sum()) for v in (0, 1, 2)}

    root = zarr.open_group(out, mode="r")
    shapes = [root[str(k)].shape for k in range(4)]
    assert shapes == [(150,) * 3, (75,) * 3, (38,) * 3, (19,) * 3]
    assert root["0"].chunks == (16, 32, 32) and root["3"].chunks == (16, 19, 19)
    # slab-wise pyramid equals the pyramid of the whole array
    np.testing.assert_array_equal(root["1"][:], downsample_mean(vol))
    np.testing.assert_array_equal(root["2"][:], downsample_mean(downsample_mean(vol)))
    np.testing.assert_array_equal(root["labels/phases/1"][:], downsample_mode(lab))
    assert root["labels/phases/2"].shape == (38, 38, 38)

    nodes = _ome_nodes(out)
    img = nodes["."]
    assert [d.shape for d in img.data] == shapes
    assert [a["name"] for a in img.metadata["axes"]] == ["z", "y", "x"]
    scales = [t[0]["scale"] for t in img.metadata["coordinateTransformations"]]
    assert scales == [[2.0, 0.5, 0.5], [4.0, 1.0, 1.0], [8.0, 2.0, 2.0], [16.0, 4.0, 4.0]]
    assert root.attrs["ome"]["version"] == "0.5"
    label_node = nodes["labels/phases"]
    assert [d.shape for d in label_node.data] == shapes
    colors = label_node.metadata["color"]
    assert set(colors) == {0, 1, 2} and colors[0] == [0, 0, 0, 0] and colors[1][3] == 1.0


def test_cement_ngff04_blosc_and_v3_sharding(shared_data: Path, tmp_path: Path, run_tile) -> None:
    src = shared_data / "qim3d/qim3d/examples/cement_128x128x128.tif"
    vol = tifffile.imread(src)
    out = tmp_path / "cement04.zarr"
    code, err = run_tile(src, "--out", out, "--ngff", "0.4", "--codec", "blosc")
    assert code == 0, err
    opened = open_volume(out)
    image, labels, attrs = opened.image, opened.labels, opened.attrs
    assert image.metadata.zarr_format == 2 and labels is None
    np.testing.assert_array_equal(image[:], vol)
    _check_stats(attrs["statistics"], vol)
    assert (out / "0" / ".zarray").is_file() and (out / "0" / "0" / "0" / "0").is_file()
    meta = json.loads((out / ".zattrs").read_text())
    assert meta["multiscales"][0]["version"] == "0.4"
    assert [d.shape for d in _ome_nodes(out)["."].data] == [(128,) * 3, (64,) * 3, (32,) * 3]

    out3 = tmp_path / "cement_sharded.zarr"
    code, err = run_tile(
        src, "--out", out3, "--chunks", "16", "32", "32", "--shards", "64", "128", "128"
    )
    assert code == 0, err
    root = zarr.open_group(out3, mode="r")
    assert root["0"].shards == (64, 128, 128) and root["0"].chunks == (16, 32, 32)
    assert sorted(p.name for p in (out3 / "0" / "c").iterdir()) == ["0", "1"]  # 2 shards
    np.testing.assert_array_equal(root["0"][:], vol)


def test_isbi_slice_folder_with_labels(shared_data: Path, tmp_path: Path, run_tile) -> None:
    d = shared_data / "isbi2012/train"
    vol = np.stack([np.asarray(Image.open(d / "image" / f"{i}.png")) for i in range(30)])
    lab = np.stack([np.asarray(Image.open(d / "label" / f"{i}.png")) for i in range(30)])
    out = tmp_path / "isbi.zarr"
    code, err = run_tile(
        d / "image",
        "--out",
        out,
        "--labels",
        d / "label",
        "--voxel-size",
        "50",
        "4",
        "4",
        "--chunks",
        "8",
        "128",
        "128",
    )
    assert code == 0, err
    opened = open_volume(out)
    image, labels, attrs = opened.image, opened.labels, opened.attrs
    np.testing.assert_array_equal(image[:], vol)  # natural order: 0, 1, ..., 9, 10, ...
    np.testing.assert_array_equal(labels[:], lab)
    _check_stats(attrs["statistics"], vol)
    assert attrs["split"] == {"train": [0, 21], "val": [21, 24], "test": [24, 30], "gap": 0}
    assert attrs["source"]["kind"] == "slices" and attrs["source"]["shape"] == [30, 512, 512]
    assert set(attrs["labels"]["counts"]) == {"0", "255"}


def test_open_volume_refuses_incomplete(shared_data: Path, tmp_path: Path, run_tile) -> None:
    src = shared_data / "qim3d/qim3d/examples/cement_128x128x128.tif"
    out = tmp_path / "c.zarr"
    assert run_tile(src, "--out", out, "--levels", "1")[0] == 0
    (out / ".dlpipe_complete").unlink()
    with pytest.raises(UserError, match="incomplete"):
        open_volume(out)
    with pytest.raises(UserError, match="not found"):
        open_volume(tmp_path / "nope.zarr")


def test_mlflow_child_run(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    from dlpipe.cli import main

    src = shared_data / "qim3d/qim3d/examples/cement_128x128x128.tif"
    cfg = json.dumps(
        {"results": str(tmp_path / "results"), "tracking": {"enabled": True, "experiment": "t"}}
    )
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--config-json",
                cfg,
                "tile",
                str(src),
                "--out",
                str(tmp_path / "c.zarr"),
                "--levels",
                "2",
            ]
        )
    assert exc.value.code == 0, capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id])
    vol = tifffile.imread(src)
    assert run.data.tags["stage"] == "tile" and run.data.tags["shape"] == "128x128x128"
    assert run.data.metrics["max"] == vol.max() and run.data.metrics["voxels"] == 128**3
    assert run.data.metrics["mb_per_s"] > 0 and run.data.params["levels"] == "2"


def test_float32_cement_statistics(shared_data: Path, tmp_path: Path, run_tile) -> None:
    vol = tifffile.imread(shared_data / "qim3d/qim3d/examples/cement_128x128x128.tif")
    f = (vol.astype(np.float32) - 100.5) * np.float32(0.013)  # attenuation-like floats
    np.save(tmp_path / "f.npy", f)
    code, err = run_tile(
        tmp_path / "f.npy",
        "--out",
        tmp_path / "f.zarr",
        "--chunks",
        "16",
        "64",
        "64",
        "--memory-budget-mb",
        "64",
        "--levels",
        "2",
    )
    assert code == 0, err
    opened = open_volume(tmp_path / "f.zarr")
    image, _, attrs = opened.image, opened.labels, opened.attrs
    np.testing.assert_array_equal(image[:], f)
    st = attrs["statistics"]
    x = f.astype(np.float64)
    assert st["min"] == float(f.min()) and st["max"] == float(f.max())
    assert st["mean"] == pytest.approx(x.mean(), rel=1e-9, abs=1e-9)
    assert st["std"] == pytest.approx(x.std(), rel=1e-9)
    bin_width = (f.max() - f.min()) / 32768 * 2  # adaptive bins: at most ~2 x range / 65536
    assert abs(st["p0_1"] - np.percentile(x, 0.1)) <= bin_width
    assert abs(st["p99_9"] - np.percentile(x, 99.9)) <= bin_width
    assert st["exact_percentiles"] is False
    np.testing.assert_allclose(
        zarr.open_group(tmp_path / "f.zarr")["1"][:], downsample_mean(f), rtol=0, atol=0
    )
