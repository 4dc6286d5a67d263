"""Issue 17 item 6: non-finite values are refused and every JSON written is strict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _input_helpers import TRAIN_TINY, dlpipe, leftovers, one_line_error, tiled_volume


def _float_tif(tmp: Path) -> Path:
    data = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    data[0, 0, 0], data[1, 2, 3] = np.nan, np.inf
    tifffile.imwrite(tmp / "f.tif", data)
    return tmp / "f.tif"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_replace_nonfinite_needs_a_finite_value(tmp_path: Path, value: str) -> None:
    code, _, err = dlpipe(
        "tile",
        _float_tif(tmp_path),
        "--out",
        tmp_path / "o.zarr",
        "--replace-nonfinite",
        value,
        cwd=tmp_path,
    )
    line = one_line_error(err)
    assert code == 2 and "tile.replace_nonfinite" in line and "not a finite number" in line
    assert leftovers(tmp_path, "o.zarr") == []


def test_replace_nonfinite_with_a_finite_value_gives_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    code, _, err = dlpipe(
        "tile", _float_tif(tmp_path), "--out", out, "--replace-nonfinite", "0", cwd=tmp_path
    )
    assert code == 0, err
    _all_strict_json(out)


def test_nan_voxel_size_in_the_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile:\n  voxel_size: [.nan, 1, 1]\n")
    tifffile.imwrite(tmp_path / "v.tif", np.zeros((5, 8, 8), np.uint8))
    code, _, err = dlpipe(
        "--config", cfg, "tile", tmp_path / "v.tif", "--out", tmp_path / "o.zarr", cwd=tmp_path
    )
    line = one_line_error(err)
    assert code == 2 and "c.yaml" in line and "tile.voxel_size" in line and "nan" in line
    assert leftovers(tmp_path, "o.zarr") == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_set_lr_non_finite_is_one_line(tmp_path: Path, value: str) -> None:
    vol = tiled_volume(tmp_path)
    code, _, err = dlpipe(
        "train",
        vol,
        "--out",
        tmp_path / "model_out",
        *TRAIN_TINY,
        "--set",
        f"lr={value}",
        cwd=tmp_path,
    )
    line = one_line_error(err)
    assert code == 2 and "train.lr" in line and value.lower().lstrip("-")[:3] in line.lower()
    assert leftovers(tmp_path, "model_out") == []


def _reject(constant: str) -> None:
    raise AssertionError(f"non-strict JSON constant {constant}")


def _all_strict_json(folder: Path) -> None:
    """Every JSON file under ``folder`` parses without NaN/Infinity."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(".json")]
    assert files
    for f in files:
        json.loads(f.read_text(), parse_constant=_reject)


def test_tiled_volume_json_is_strict(tmp_path: Path) -> None:
    _all_strict_json(tiled_volume(tmp_path))
