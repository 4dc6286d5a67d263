"""instance-unet: CLI end to end (train 2 steps, predict, output formats) and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.annotations import write_instance_dataset
from dlpipe.training import write_labelled_volume

NO_TRACKING = json.dumps({"tracking": {"enabled": False}})
TINY = [
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--set",
    "steps_per_epoch=2",
    "--set",
    "batch_size=2",
    "--set",
    "architecture.depth=2",
    "--set",
    "architecture.base_filters=4",
    "--set",
    "workers=0",
    "--set",
    "val_max_patches=4",
    "--set",
    "torch_threads=1",
]


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    from dlpipe.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--config-json", NO_TRACKING, *[str(a) for a in args]])
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out, cap.err


def _discs(n: int, size: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    frames = []
    for i in range(n):
        inst = np.zeros((size, size), np.uint32)
        for k in range(1, 7):
            c, r = rng.uniform(4, size - 4, 2), rng.uniform(3, 6)
            inst[((yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r * r) & (inst == 0)] = k
        img = (40 + 150 * (inst > 0) + rng.normal(0, 10, inst.shape)).clip(0, 255)
        rgb = np.repeat(img[..., None], 3, -1).astype(np.uint8)
        frames.append((f"im{i}.png", rgb, (inst > 0).astype(np.uint8), inst))
    return frames


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """Four 40x40 RGB images of discs (colour: the model converts them to grey)."""
    path = tmp_path / "ds.zarr"
    write_instance_dataset(
        path, _discs(4, 40, 0), classes=["background", "nucleus"], sizes=[(40, 40)] * 4, channels=3
    )
    return path


def test_cli_train_predict_dataset(tmp_path: Path, dataset: Path, capsys) -> None:
    model, pred = tmp_path / "model", tmp_path / "pred.zarr"
    args = ["train", "--model", "instance-unet", dataset, "--out", model, *TINY]
    code, out, err = _run(
        capsys, *args, "--set", "patch_size=[32,32]", "--set", "val_fraction=0.25"
    )
    assert code == 0, err
    assert "instance U-Net" in out.strip().splitlines()[-1]
    card = json.loads((model / "card.json").read_text())
    assert card["model"] == "instance-unet" and card["classes"] == ["background", "nucleus"]
    assert card["architecture"]["n_classes"] == 4  # 2 classes + boundary + distance
    assert card["channels"] == 1 and "luminance" in card["channel_rule"]
    ws = card["watershed"]
    assert len(ws["grid"]) == 15 and 0 < ws["best"]["seed_threshold"] < 1
    # one validation image of <= 6 discs: too few objects, the config's thresholds are kept
    assert not ws["tuned"] and 1 <= ws["val_objects"] <= 6 and "tune_min_objects" in ws["note"]
    assert (ws["seed_threshold"], ws["foreground_threshold"]) == (0.5, 0.5)
    rows = list(csv.DictReader((model / "metrics.csv").open()))
    for term in ("semantic", "boundary", "distance"):
        assert f"train_loss_{term}" in rows[0] and f"val_loss_{term}" in rows[0]
    code, out, err = _run(
        capsys, "predict", model, dataset, "--out", pred, "--set", "instance_unet.min_size=1"
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("predicted ")
    g = zarr.open_group(str(pred), mode="r")
    assert g["instances"].shape == (4, 40, 40) and g["instances"].dtype == np.uint32
    assert g["semantic"].dtype == np.uint8 and g["maps/distance"].shape == (4, 40, 40)
    assert (pred / ".dlpipe_complete").is_file() and (pred / "instances.parquet").is_file()
    table = list(csv.DictReader((pred / "instances.csv").open()))
    assert list(table[0]) if table else True
    for r in table:
        lab = np.asarray(g["instances"][int(r["image"])])
        assert int(r["area"]) == int((lab == int(r["instance_id"])).sum())
        assert r["class_name"] == "nucleus"
    attrs = g.attrs["dlpipe"]
    assert attrs["model"]["family"] == "instance-unet" and attrs["classes"][1] == "nucleus"
    # zoomed before the network (objects smaller than in training): same output shape
    code, _, err = _run(
        capsys, "predict", model, dataset, "--out", tmp_path / "x2.zarr", "--set",
        "instance_unet.scale=2",
    )  # fmt: skip
    assert code == 0, err
    assert zarr.open_group(str(tmp_path / "x2.zarr"), mode="r")["instances"].shape == (4, 40, 40)
    # evaluate --instances reads it as a Mask R-CNN prediction
    code, out, err = _run(
        capsys, "evaluate", "--instances", pred, dataset, "--out", tmp_path / "m.json"
    )
    assert code == 0, err


def test_bad_input_is_one_line(tmp_path: Path, dataset: Path, capsys) -> None:
    # a dataset without instances
    plain = tmp_path / "plain.zarr"
    g = zarr.open_group(str(plain), mode="w")
    g.create_array("images", shape=(2, 16, 16), dtype="uint8")
    g.create_array("semantic", shape=(2, 16, 16), dtype="uint8")
    g.attrs["classes"] = ["background", "x"]
    (plain / ".dlpipe_complete").write_text("complete\n")
    model = tmp_path / "m1"
    code, _, err = _run(capsys, "train", "--model", "instance-unet", plain, "--out", model, *TINY)
    assert code == 2 and "no instances array" in err and len(err.strip().splitlines()) == 1
    assert not model.exists()
    # a tiled volume without the instance label array
    rng = np.random.default_rng(0)
    vol = write_labelled_volume(
        tmp_path / "vol.zarr",
        rng.normal(size=(8, 16, 16)).astype(np.float32),
        (rng.random((8, 16, 16)) > 0.5).astype(np.uint8),
        split={"train": [0, 5], "val": [5, 8], "test": [8, 8]},
        classes=["a", "b"],
        chunks=(4, 8, 8),
    )
    code, _, err = _run(capsys, "train", "--model", "instance-unet", vol, "--out", model, *TINY)
    assert code == 2 and "no instance label array" in err and len(err.strip().splitlines()) == 1
    assert not model.exists()
    # thresholds out of range
    code, _, err = _run(
        capsys,
        "train",
        "--model",
        "instance-unet",
        dataset,
        "--out",
        model,
        "--set",
        "instance_unet.seed_threshold=1.5",
    )
    assert code == 2 and "seed_threshold" in err and len(err.strip().splitlines()) == 1
    assert not model.exists()


def _pore_volume(tmp_path: Path) -> Path:
    """A 24x40x40 volume of touching balls with an instance label array.

    Named like `dlpipe tile --instances pore_instances.tif` names it: training finds it with
    the default ``instance_unet.instances: null``.
    """
    rng = np.random.default_rng(2)
    shape = (24, 40, 40)
    grids = np.indices(shape)
    inst = np.zeros(shape, np.uint32)
    for k in range(1, 30):
        c, r = rng.uniform(0, shape), rng.uniform(3, 6)
        m = sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True)) < r * r
        inst[m & (inst == 0)] = k
    image = (100 - 60 * (inst > 0) + rng.normal(0, 5, shape)).astype(np.float32)
    vol = write_labelled_volume(
        tmp_path / "pores.zarr",
        image,
        (inst > 0).astype(np.uint8),
        split={"train": [0, 16], "val": [16, 24], "test": [16, 24]},
        classes=["matrix", "pore"],
        chunks=(8, 16, 16),
    )
    g = zarr.open_group(str(vol), mode="r+")
    g.require_group("labels").require_group("pore_instances").create_array(
        "0", data=inst, chunks=(8, 16, 16)
    )
    return vol


@pytest.mark.parametrize("mode,patch", [("3d", "[8,16,16]"), ("2d", "[16,16]")])
def test_cli_volume_chunked(tmp_path: Path, capsys, mode: str, patch: str) -> None:
    vol = _pore_volume(tmp_path)
    model, pred = tmp_path / "model", tmp_path / "pred.zarr"
    code, _, err = _run(
        capsys,
        "train",
        "--model",
        "instance-unet",
        vol,
        "--out",
        model,
        "--input",
        mode,
        *TINY,
        "--set",
        f"patch_size={patch}",
        "--set",
        "instance_unet.tune_images=2",
        "--set",
        "instance_unet.class_name=pore",
    )
    assert code == 0, err
    card = json.loads((model / "card.json").read_text())
    assert card["input"] == mode and card["classes"] == ["background", "pore"]
    code, _, err = _run(
        capsys,
        "predict",
        model,
        vol,
        "--out",
        pred,
        "--set",
        "instance_unet.block=[8,16,16]",
        "--set",
        "instance_unet.halo=[4,4,4]",
        "--set",
        "instance_unet.margin=4",
        "--set",
        f"instance_unet.window={24 if mode == '3d' else 64}",
    )
    assert code == 0, err
    g = zarr.open_group(str(pred), mode="r")
    assert g["instances"].shape == (24, 40, 40) and g["instances"].chunks == (8, 16, 16)
    assert g.attrs["dlpipe"]["source_kind"] == "volume"
    header = (pred / "instances.csv").read_text().splitlines()[0].split(",")
    assert "z2" in header and "instance_id" in header
    # each row is its 3D object: voxel count and z-extent [z, z2) of the volume's ids
    ids = np.asarray(g["instances"][:])
    rows = list(csv.DictReader((pred / "instances.csv").open()))
    assert len(rows) == len(np.unique(ids[ids > 0]))  # a row per object (3d: one; 2d: none)
    for r in rows:
        zz = np.flatnonzero((ids == int(r["instance_id"])).any(axis=(1, 2)))
        assert int(r["area"]) == int((ids == int(r["instance_id"])).sum())
        assert (int(r["z"]), int(r["z2"])) == (int(zz[0]), int(zz[-1]) + 1)
