"""Blob rules: ring artefacts, sizes, holes, opening; the CLI and its tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from dlpipe.cli import main
from dlpipe.postprocess import postprocess

PARAMS = {"labels_name": "phases", "connectivity": 26, "chunks": None, "rules": []}


def _write(path: Path, vol: np.ndarray, chunks: tuple[int, ...]) -> Path:
    arr = zarr.create_array(str(path), shape=vol.shape, chunks=chunks, dtype="uint8")
    arr[:] = vol
    return path


def _read(path: Path) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")["labels/phases/0"][:]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _ring_and_pore() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, x = np.mgrid[:64, :64]
    ring = (np.hypot(y - 32, x - 32) >= 18) & (np.hypot(y - 32, x - 32) < 20)  # 240 px
    disc = np.hypot(y - 32, x - 32) <= 8.75  # 241 px: a round pore of the same area
    return ring, disc, np.zeros((10, 64, 64), np.uint8)


def test_ring_artefact_removed_round_pore_of_same_area_kept(tmp_path: Path) -> None:
    ring, disc, vol = _ring_and_pore()
    assert abs(int(ring.sum()) - int(disc.sum())) <= 1
    vol[1:3][:, ring] = 2  # ring artefact: 2 slices, thin and wide
    vol[6:8][:, disc] = 2  # round pore, 2 slices, same area
    src = _write(tmp_path / "p.zarr", vol, (4, 32, 32))
    params = PARAMS | {
        "rules": [{"phase": 2, "ring": {"max_slices": 3, "min_area": 50, "min_slenderness": 8}}]
    }
    summary = postprocess(src, tmp_path / "c.zarr", params)
    out = _read(tmp_path / "c.zarr")
    assert not (out[1:3] == 2).any()  # the ring went to the surrounding matrix
    assert np.array_equal(out[6:8] == 2, np.broadcast_to(disc, (2, 64, 64)))
    assert summary["changed_voxels"] == {"ring_artefact": int(ring.sum()) * 2}
    changes = _rows(tmp_path / "c.changes.csv")
    assert [(r["from_phase"], r["to_phase"], r["reason"]) for r in changes] == [
        ("2", "0", "ring_artefact")
    ]
    blobs = _rows(tmp_path / "c.blobs.csv")
    pores = [r for r in blobs if r["phase"] == "2"]
    assert len(pores) == 2 and {r["reason"] for r in pores} == {"ring_artefact", ""}
    assert (tmp_path / "c.zarr" / ".dlpipe_complete").is_file()


def test_size_rule_and_holes_and_surrounding_phase(tmp_path: Path) -> None:
    vol = np.zeros((12, 24, 24), np.uint8)
    vol[:, :, 12:] = 1  # fibre half
    vol[5, 5, 5] = 2  # tiny pore in matrix -> removed by min_size, goes to matrix
    vol[5, 5, 18] = 2  # tiny pore inside fibre -> goes to fibre
    vol[3:6, 10:13, 16:19] = 0  # a matrix pocket enclosed by fibre -> hole filled
    src = _write(tmp_path / "p.zarr", vol, (6, 12, 12))
    params = PARAMS | {
        "rules": [
            {"phase": 2, "min_size": 5},
            {"phase": 1, "fill_holes": True, "max_hole_size": 100},
        ]
    }
    postprocess(src, tmp_path / "c.zarr", params)
    out = _read(tmp_path / "c.zarr")
    assert out[5, 5, 5] == 0 and out[5, 5, 18] == 1
    assert (out[3:6, 10:13, 16:19] == 1).all()
    reasons = sorted(r["reason"] for r in _rows(tmp_path / "c.changes.csv"))
    assert reasons == ["hole", "min_size", "min_size"]


def test_opening_chunked_equals_whole_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vol = (ndimage.gaussian_filter(rng.random((16, 32, 32)), 1.0) > 0.5).astype(np.uint8)
    src = _write(tmp_path / "p.zarr", vol, (5, 9, 11))
    params = PARAMS | {"rules": [{"phase": 1, "opening": 1, "closing": 1, "reassign_to": 0}]}
    postprocess(src, tmp_path / "c.zarr", params)
    ball = ndimage.generate_binary_structure(3, 1)
    ref = ndimage.binary_opening(vol == 1, ball)
    ref = ref | (ndimage.binary_closing(ref, ball) & ~ref)
    assert np.array_equal(_read(tmp_path / "c.zarr") == 1, ref)


def test_on_disk_ids_same_result_and_a_killed_runs_scratch_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlpipe.postprocess import clean

    rng = np.random.default_rng(5)
    vol = (ndimage.gaussian_filter(rng.random((12, 24, 24)), 1.0) > 0.5).astype(np.uint8)
    src = _write(tmp_path / "p.zarr", vol, (5, 9, 11))
    params = PARAMS | {"rules": [{"phase": 1, "min_size": 30}]}
    postprocess(src, tmp_path / "mem.zarr", params)  # ids in memory
    stale = tmp_path / ".ids.c.zarr.killed"  # what a killed run into c.zarr leaves
    (stale / "c").mkdir(parents=True)
    other = tmp_path / ".ids.other.zarr.running"  # another output's scratch
    other.mkdir()
    monkeypatch.setattr(clean, "IN_MEMORY_LIMIT", 0)  # ids in a Zarr scratch beside c.zarr
    postprocess(src, tmp_path / "c.zarr", params)
    assert np.array_equal(_read(tmp_path / "c.zarr"), _read(tmp_path / "mem.zarr"))
    assert not stale.exists() and other.is_dir()
    assert not list(tmp_path.glob(".ids.c.zarr.*"))  # its own scratch is gone too


def test_cli_postprocess_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring, _, vol = _ring_and_pore()
    vol[2][ring] = 2
    src = _write(tmp_path / "p.zarr", vol, (5, 32, 32))
    cfg = {
        "tracking": {"enabled": False},
        "postprocess": {"rules": [{"phase": 2, "ring": {"min_area": 100}}]},
    }
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--log-level",
                "warning",
                "--config-json",
                json.dumps(cfg),
                "postprocess",
                str(src),
                "--out",
                str(tmp_path / "c.zarr"),
            ]
        )
    assert exc.value.code == 0
    assert not (_read(tmp_path / "c.zarr") == 2).any()
    with pytest.raises(SystemExit) as exc:  # exists, no --overwrite
        main(
            [
                "--log-level",
                "warning",
                "--config-json",
                json.dumps(cfg),
                "postprocess",
                str(src),
                "--out",
                str(tmp_path / "c.zarr"),
            ]
        )
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--log-level",
                "warning",
                "--config-json",
                json.dumps(cfg),
                "postprocess",
                str(tmp_path / "nope.zarr"),
                "--out",
                str(tmp_path / "d.zarr"),
            ]
        )
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "no such file" in err and len(err.splitlines()) == 1
