"""`dlpipe cvat EXPORT --volume VOL.zarr`: placement by name or manifest, and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from dlpipe.annotations.cvat.write import write_cvat_xml

RunCli = Callable[..., tuple[int, str]]
SHAPE = (10, 12, 14)


@pytest.fixture()
def store(run_cli: RunCli, tmp_path: Path) -> Path:
    vol = np.random.default_rng(2).integers(0, 255, SHAPE).astype(np.uint8)
    np.save(tmp_path / "scan.npy", vol)
    out = tmp_path / "scan.zarr"
    code, err = run_cli("tile", tmp_path / "scan.npy", "--out", out, "--chunks", "4", "4", "4")
    assert code == 0, err
    return out


def _mask(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[rows, cols] = True
    return m


def _export(
    path: Path,
    images: Sequence[tuple[str, int, int, list[dict[str, Any]]]],
    labels: Sequence[str] = ("fibre", "pore"),
) -> Path:
    return write_cvat_xml(path, list(labels), images)


def _shape(label: str, mask: np.ndarray) -> dict[str, Any]:
    return {"type": "mask", "label": label, "mask": mask}


def _nothing_written(store: Path) -> None:
    root = zarr.open_group(str(store), mode="r")
    assert "annotations" not in root["labels"] if "labels" in root else True
    assert "annotations" not in root.attrs["dlpipe"]
    assert not (store / "labels" / "annotations").exists()


def test_demo_names_and_empty_images(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    """``slice_0012.png`` is z 12; an image without shapes is not annotated (no manifest)."""
    ny, nx = SHAPE[1:]
    xml = _export(
        tmp_path / "annotations.xml",
        [
            ("slice_0003.png", nx, ny, [_shape("pore", _mask(ny, nx, slice(2, 5), slice(5, 8)))]),
            ("slice_0005.png", nx, ny, []),
            ("scan_x0002.png", ny, SHAPE[0], [_shape("fibre", _mask(10, 12, slice(6, 10), 5))]),
        ],
    )
    code, err = run_cli("cvat", xml, "--volume", store)
    assert code == 0, err
    root = zarr.open_group(str(store), mode="r")
    placed = root["labels/annotations/0"][:]
    assert root.attrs["dlpipe"]["annotations"]["slices"] == {"z": [3], "x": [2]}
    assert (placed[5] == 255).sum() == ny * nx - ny  # z 5 only where x 2 crosses it
    assert placed[3, 2, 5] == 2 and placed[3, 0, 0] == 0
    assert placed[7, 5, 2] == 1 and placed[3, 5, 2] == 0  # x 2 (rows z, columns y)


def test_manifest_gives_positions(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    ny, nx = SHAPE[1:]
    (tmp_path / "slices.json").write_text(
        json.dumps({"slices": {"first.png": {"axis": "z", "index": 7}}})
    )
    xml = _export(
        tmp_path / "annotations.xml",
        [("first.png", nx, ny, [_shape("fibre", _mask(ny, nx, slice(0, 2), slice(0, 2)))])],
    )
    code, err = run_cli("cvat", xml, "--volume", store)
    assert code == 0, err
    placed = zarr.open_group(str(store), mode="r")["labels/annotations/0"][:]
    assert placed[7, 0, 0] == 1 and placed[7, 5, 5] == 0 and (placed[6] == 255).all()


def _bad(run_cli: RunCli, store: Path, xml: Path, *words: str) -> None:
    code, err = run_cli("cvat", xml, "--volume", store)
    assert code == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1, err
    for w in words:
        assert w in line, line
    _nothing_written(store)


def test_bad_name(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    ny, nx = SHAPE[1:]
    xml = _export(tmp_path / "a.xml", [("photo.png", nx, ny, [])])
    _bad(run_cli, store, xml, "photo.png", "no slice position", "manifest")


def test_bad_size(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    xml = _export(tmp_path / "a.xml", [("scan_y0003.png", 12, 10, [])])
    _bad(run_cli, store, xml, "scan_y0003.png", "12x10", "14x10")


def test_bad_crossing(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    nz, ny, nx = SHAPE
    z4 = _mask(ny, nx, slice(0, ny), slice(0, nx))  # all fibre
    y6 = _mask(nz, nx, slice(0, 4), slice(0, nx))  # fibre on z 0..3 only: z 4 is background
    xml = _export(
        tmp_path / "a.xml",
        [
            ("scan_z0004.png", nx, ny, [_shape("fibre", z4)]),
            ("scan_y0006.png", nx, nz, [_shape("fibre", y6)]),
        ],
    )
    _bad(run_cli, store, xml, "scan_z0004.png", "scan_y0006.png", "disagree", "14 voxels")


def test_bad_label(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    ny, nx = SHAPE[1:]
    xml = _export(
        tmp_path / "a.xml",
        [("scan_z0001.png", nx, ny, [_shape("crack", _mask(ny, nx, slice(0, 1), 0))])],
        labels=("fibre", "pore", "crack"),
    )
    code, err = run_cli("cvat", xml, "--volume", store, "--classes", "fibre,pore")
    assert code == 2 and "'crack'" in err and len(err.strip().splitlines()) == 1
    _nothing_written(store)


def test_bad_index_and_no_target(run_cli: RunCli, tmp_path: Path, store: Path) -> None:
    ny, nx = SHAPE[1:]
    xml = _export(tmp_path / "a.xml", [("scan_z0010.png", nx, ny, [])])
    _bad(run_cli, store, xml, "scan_z0010.png", "outside")
    code, err = run_cli("cvat", xml)
    assert code == 2 and "--volume" in err


def test_real_scan_round_trip(run_cli: RunCli, tmp_path: Path, shared_data: Path) -> None:
    """qim3d's fibres scan: tile it, export 3 crossing slices of labels, place them back."""
    from dlpipe.stores.volume import write_labels

    src = shared_data / "qim3d/qim3d/examples/fibers_150x150x150.tif"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    import tifffile

    vol = tifffile.imread(src)
    store = tmp_path / "fibres.zarr"
    code, err = run_cli("tile", src, "--out", store)
    assert code == 0, err
    t1, t2 = np.percentile(vol, [60, 90])
    labels = ((vol > t1).astype(np.uint8) + (vol > t2)).astype(np.uint8)
    pred = tmp_path / "pred.zarr"
    full = tuple(slice(0, s) for s in vol.shape)
    write_labels(pred, [(full, labels)], vol.shape, (64, 64, 64), like=store,
                 classes=["void", "matrix", "fibre"])  # fmt: skip
    task = tmp_path / "task"
    code, err = run_cli(
        "slices", store, "--labels", pred, "--axis", "z,y,x", "--at", "75", "--out", task
    )
    assert code == 0, err
    assert len(list(task.glob("fibres_*0075.png"))) == 3
    code, err = run_cli("cvat", task / "annotations.zip", "--volume", store)
    assert code == 0, err
    placed = zarr.open_group(str(store), mode="r")["labels/annotations/0"][:]
    mask = np.zeros(vol.shape, bool)
    mask[75] = mask[:, 75] = mask[:, :, 75] = True
    np.testing.assert_array_equal(placed, np.where(mask, labels, 255))
