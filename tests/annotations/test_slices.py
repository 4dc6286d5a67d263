"""`dlpipe slices`: names, manifest, windowing, predicted labels as CVAT masks, round trip."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

from dlpipe.annotations.slices import parse_slice_name, plan_slices, slice_name, window_u8
from dlpipe.errors import UserError
from dlpipe.stores.volume import write_labels

RunCli = Callable[..., tuple[int, str]]
CLASSES = ["matrix", "fibre", "pore"]


def _tile(run_cli: RunCli, tmp: Path, vol: np.ndarray, name: str = "scan") -> Path:
    np.save(tmp / f"{name}.npy", vol)
    out = tmp / f"{name}.zarr"
    code, err = run_cli("tile", tmp / f"{name}.npy", "--out", out, "--chunks", "4", "8", "8")
    assert code == 0, err
    return out


def _pred(tmp: Path, labels: np.ndarray, like: Path) -> Path:
    out = tmp / "pred.zarr"
    sl = tuple(slice(0, s) for s in labels.shape)
    write_labels(out, [(sl, labels)], labels.shape, (8, 8, 8), like=like, classes=CLASSES)
    return out


def _phantom(shape: tuple[int, int, int] = (12, 20, 24)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 4000, shape).astype(np.uint16)
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    labels[(y - 10) ** 2 + (x - 8) ** 2 < 20] = 1  # a fibre along z
    labels[(z - 6) ** 2 + (y - 5) ** 2 + (x - 17) ** 2 < 9] = 2  # a pore
    labels[:, 15:17, 20:22] = 1  # a second region of the same class
    return vol, labels


def test_names_and_plan() -> None:
    assert slice_name("scan", "z", 12) == "scan_z0012.png"
    assert slice_name("scan", "x", 12345) == "scan_x12345.png"
    assert parse_slice_name("scan_z0012.png") == ("z", 12)
    assert parse_slice_name("images/my_scan_y0080.png") == ("y", 80)
    assert parse_slice_name("scan_x0100.jpg") == ("x", 100)
    assert parse_slice_name("slice_0012.png") == ("z", 12)  # the demo's export
    assert parse_slice_name("photo.png") is None
    assert plan_slices((48, 10, 9), ["z"], count=3) == [("z", 8), ("z", 24), ("z", 40)]
    assert plan_slices((48, 10, 9), ["y,x"], at=[2, 1]) == [
        ("y", 1),
        ("y", 2),
        ("x", 1),
        ("x", 2),
    ]
    with pytest.raises(UserError, match="outside"):
        plan_slices((48, 10, 9), ["x"], at=[9])
    with pytest.raises(UserError, match="either"):
        plan_slices((48, 10, 9), ["z"])
    with pytest.raises(UserError, match="not one of"):
        plan_slices((48, 10, 9), ["w"], count=1)


def test_window_by_hand(run_cli: RunCli, tmp_path: Path) -> None:
    """1000 voxels 0..999: p0.1 = 0.999 and p99.9 = 998.001 (linear between ranks)."""
    vol = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    store = _tile(run_cli, tmp_path, vol, "ramp")
    stats = json.loads((store / "zarr.json").read_text())["attributes"]["dlpipe"]["statistics"]
    assert stats["p0_1"] == pytest.approx(0.999)
    assert stats["p99_9"] == pytest.approx(998.001)
    code, err = run_cli("slices", store, "--out", tmp_path / "task", "--at", "0,5", "--axis", "z")
    assert code == 0, err
    z5 = iio.imread(tmp_path / "task" / "ramp_z0005.png")
    assert z5.dtype == np.uint8 and z5.shape == (10, 10)
    # voxel value v -> round((v - 0.999) * 255 / 997.002)
    assert z5[0, 0] == 128  # 500 -> 127.63
    assert z5[9, 9] == 153  # 599 -> 152.95
    z0 = iio.imread(tmp_path / "task" / "ramp_z0000.png")
    assert z0[0, 0] == 0 and z0[0, 1] == 0  # 0 and 1 clip / round to 0
    assert z0[1, 0] == 2  # 10 -> 2.30
    assert z0[9, 9] == 25  # 99 -> 25.07
    assert window_u8(np.array([999.0]), 0.999, 998.001)[0] == 255


def test_slices_names_manifest_and_orientation(run_cli: RunCli, tmp_path: Path) -> None:
    vol, _ = _phantom()
    store = _tile(run_cli, tmp_path, vol)
    task = tmp_path / "task"
    code, err = run_cli(
        "slices", store, "--out", task, "--axis", "z", "--axis", "y,x", "--at", "3,7"
    )
    assert code == 0, err
    names = sorted(p.name for p in task.glob("*.png"))
    assert names == [f"scan_{a}{i:04d}.png" for a in "xyz" for i in (3, 7)]
    manifest = json.loads((task / "slices.json").read_text())
    stats = json.loads((store / "zarr.json").read_text())["attributes"]["dlpipe"]["statistics"]
    lo, hi = stats["p0_1"], stats["p99_9"]
    entry = manifest["slices"]["scan_y0007.png"]
    assert entry["axis"] == "y" and entry["index"] == 7
    assert entry["volume"] == str(store.resolve()) and entry["window"] == [lo, hi]
    for name, view in [
        ("scan_z0003.png", vol[3]),
        ("scan_y0007.png", vol[:, 7, :]),
        ("scan_x0003.png", vol[:, :, 3]),
    ]:
        np.testing.assert_array_equal(iio.imread(task / name), window_u8(view, lo, hi))
    assert not (task / "annotations.zip").exists()
    # the task folder exists: refused without --overwrite, nothing changed
    before = (task / "slices.json").read_bytes()
    code, err = run_cli("slices", store, "--out", task, "--count", "2")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (task / "slices.json").read_bytes() == before
    code, err = run_cli("slices", store, "--out", task, "--count", "2", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in task.glob("*.png")) == ["scan_z0003.png", "scan_z0009.png"]


@pytest.mark.parametrize("axis", ["z", "y", "x"])
def test_round_trip_exact(run_cli: RunCli, tmp_path: Path, axis: str) -> None:
    """slices --labels -> CVAT export -> cvat --volume gives exactly the predicted slices."""
    vol, labels = _phantom()
    store = _tile(run_cli, tmp_path, vol)
    pred = _pred(tmp_path, labels, store)
    task = tmp_path / "task"
    code, err = run_cli(
        "slices", store, "--labels", pred, "--axis", axis, "--at", "2,5,6", "--out", task
    )
    assert code == 0, err
    with zipfile.ZipFile(task / "annotations.zip") as zf:
        assert zf.namelist() == ["annotations.xml"]
        xml = zf.read("annotations.xml").decode()
    assert '<mask label="fibre"' in xml and "<label><name>pore</name>" in xml
    assert "matrix" not in xml  # value 0 is the background: no shape
    code, err = run_cli("cvat", task / "annotations.zip", "--volume", store)
    assert code == 0, err
    root = zarr.open_group(str(store), mode="r")
    placed = root["labels/annotations/0"][:]
    k = "zyx".index(axis)
    expected = np.full_like(labels, 255)
    for i in (2, 5, 6):
        sl = [slice(None)] * 3
        sl[k] = i
        expected[tuple(sl)] = labels[tuple(sl)]
    np.testing.assert_array_equal(placed, expected)
    attrs = root.attrs["dlpipe"]["annotations"]
    assert attrs["slices"] == {axis: [2, 5, 6]}
    assert attrs["classes"] == ["background", "fibre", "pore"]
    ome = root["labels/annotations"].attrs["ome"]
    assert ome["image-label"]["properties"][2] == {"label-value": 2, "name": "pore"}
    assert "annotations" in root["labels"].attrs["ome"]["labels"]


def test_round_trip_all_axes_at_once(run_cli: RunCli, tmp_path: Path) -> None:
    """Crossing z-, y- and x-slices of one prediction agree, and all go back exactly."""
    vol, labels = _phantom()
    store = _tile(run_cli, tmp_path, vol)
    pred = _pred(tmp_path, labels, store)
    task = tmp_path / "task"
    code, err = run_cli(
        "slices", store, "--labels", pred, "--axis", "z,y,x", "--at", "4,9", "--out", task
    )
    assert code == 0, err
    code, err = run_cli("cvat", task / "annotations.zip", "--volume", store)
    assert code == 0, err
    placed = zarr.open_group(str(store), mode="r")["labels/annotations/0"][:]
    mask = np.zeros(labels.shape, bool)
    mask[[4, 9]] = mask[:, [4, 9]] = mask[:, :, [4, 9]] = True
    np.testing.assert_array_equal(placed, np.where(mask, labels, 255))
    # placing again is refused without --overwrite
    code, err = run_cli("cvat", task / "annotations.zip", "--volume", store)
    assert code == 2 and "--overwrite" in err
    code, err = run_cli("cvat", task / "annotations.zip", "--volume", store, "--overwrite")
    assert code == 0, err


def test_reads_only_the_slices(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A y-slice reads one column of chunks (4 of 4 x 4 x 4), a z-slice one layer."""
    from zarr.storage import LocalStore

    from dlpipe.annotations.slices import export_slices

    vol = np.random.default_rng(3).integers(0, 255, (16, 32, 32)).astype(np.uint8)
    store = _tile(run_cli, tmp_path, vol)  # chunks (4, 8, 8): 4 x 4 x 4 chunks
    read: list[str] = []
    original = LocalStore.get

    async def counting(self, key, *args, **kwargs):  # type: ignore[no-untyped-def]
        if key.startswith("0/c/"):
            read.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting)
    export_slices(store, tmp_path / "y", axes=["y"], at=[9])
    assert sorted(read) == sorted(f"0/c/{z}/1/{x}" for z in range(4) for x in range(4))
    read.clear()
    export_slices(store, tmp_path / "z", axes=["z"], at=[5])
    assert sorted(read) == sorted(f"0/c/1/{y}/{x}" for y in range(4) for x in range(4))


def test_slices_bad_input(run_cli: RunCli, tmp_path: Path) -> None:
    vol, labels = _phantom()
    store = _tile(run_cli, tmp_path, vol)
    pred = _pred(tmp_path, labels[:, :, :-1], store)
    task = tmp_path / "task"
    for args, words in [
        (["--at", "12"], ["outside", "z axis"]),
        (["--at", "1", "--count", "2"], ["either"]),
        (["--at", "one"], ["--at"]),
        (["--axis", "w", "--count", "1"], ["'w'"]),
        (["--at", "1", "--labels", pred], ["labels are (12, 20, 23)"]),
        (["--at", "1", "--labels", tmp_path / "none.zarr"], ["none.zarr"]),
    ]:
        code, err = run_cli("slices", store, "--out", task, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert all(w in err for w in words), err
        assert not task.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".task")] == []
