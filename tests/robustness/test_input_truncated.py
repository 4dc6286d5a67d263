"""Issue 17 item 5 and the chunk part of item 7: truncated TIFFs, missing and damaged chunks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _input_helpers import (
    TRAIN_TINY,
    dlpipe,
    leftovers,
    one_line_error,
    phantom,
    tiled_volume,
    tiny_model,
)

from dlpipe.stores.chunks import ALL_CHUNKS


def _cut(path: Path) -> Path:
    data = path.read_bytes()
    cut = path.with_name(path.stem + "_cut.tif")
    cut.write_bytes(data[: len(data) // 2])
    return cut


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "TIFF cut short: image data ends at byte"),  # contiguous: the IndexError case
        ({"compression": "zlib"}, "TIFF declares 20 slices but holds 1"),  # read as 1 slice
        ({"imagej": True}, "TIFF declares 20 slices but holds 1"),
        ({"imagej": True, "compression": "zlib"}, "20 slices need 20 pages, the file has 10"),
    ],
)
def test_tiff_cut_in_half_is_refused(tmp_path: Path, kwargs: dict, says: str) -> None:
    image, _ = phantom((20, 64, 64))
    tifffile.imwrite(tmp_path / "v.tif", image, **kwargs)
    cut = _cut(tmp_path / "v.tif")
    code, _, err = dlpipe("tile", cut, "--out", tmp_path / "o.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "v_cut.tif" in line and says in line
    assert leftovers(tmp_path, "o.zarr") == []


def test_tile_stores_every_chunk(tmp_path: Path) -> None:
    vol = tiled_volume(tmp_path)
    arr = zarr.open_array(vol / "labels" / "phases" / "0", mode="r")
    assert arr.attrs[ALL_CHUNKS] is True
    zeros = zarr.open_group(vol, mode="r")
    assert zeros["0"].nchunks_initialized == zeros["0"].nchunks
    assert arr.nchunks_initialized == arr.nchunks


def test_predict_refuses_a_deleted_chunk_of_a_tiled_volume(tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    vol = tiled_volume(tmp_path, labels=False)
    (vol / "0" / "c" / "1" / "0" / "1").unlink()
    code, _, err = dlpipe("predict", model, vol, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "vol.zarr" in line and "missing chunk 0/c/1/0/1" in line
    assert leftovers(tmp_path, "p.zarr") == []


def test_missing_chunk_of_another_store_warns_or_strict_refuses(tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    vol = tiled_volume(tmp_path, labels=False)
    arr = zarr.open_array(vol / "0", mode="r+")
    arr.attrs.pop(ALL_CHUNKS)  # a store that may leave all-fill chunks out
    (vol / "0" / "c" / "2" / "1" / "0").unlink()
    code, _, err = dlpipe("predict", model, vol, "--out", tmp_path / "p.zarr", cwd=tmp_path)
    assert code == 0, err
    assert "chunk 0/c/2/1/0 is absent" in err and "--strict" in err
    code, _, err = dlpipe(
        "predict", model, vol, "--out", tmp_path / "q.zarr", "--strict", cwd=tmp_path
    )
    line = one_line_error(err)
    assert code == 2 and "missing chunk 0/c/2/1/0" in line and "--strict" in line
    assert leftovers(tmp_path, "q.zarr") == []


def test_train_refuses_a_deleted_label_chunk(tmp_path: Path) -> None:
    vol = tiled_volume(tmp_path)
    (vol / "labels" / "phases" / "0" / "c" / "0" / "1" / "1").unlink()
    code, _, err = dlpipe("train", vol, "--out", tmp_path / "model_out", *TRAIN_TINY, cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "missing chunk labels/phases/0/c/0/1/1" in line
    assert leftovers(tmp_path, "model_out") == []


def test_train_names_a_corrupt_chunk(tmp_path: Path) -> None:
    vol = tiled_volume(tmp_path)
    (vol / "0" / "c" / "0" / "0" / "0").write_bytes(b"\x00garbage" * 10)
    code, _, err = dlpipe("train", vol, "--out", tmp_path / "model_out", *TRAIN_TINY, cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "vol.zarr" in line and "corrupt input chunk 0/c/0/0/0" in line


def test_tile_of_a_zarr_input_names_a_corrupt_chunk(tmp_path: Path) -> None:
    image, _ = phantom((8, 32, 32))
    src = zarr.create_array(tmp_path / "in.zarr", shape=image.shape, chunks=(4, 16, 16), dtype="u1")
    src[:] = image
    (tmp_path / "in.zarr" / "c" / "1" / "1" / "0").write_bytes(b"\x00garbage" * 10)
    code, _, err = dlpipe("tile", tmp_path / "in.zarr", "--out", tmp_path / "o.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "in.zarr" in line and "corrupt input chunk c/1/1/0" in line
    assert not (tmp_path / "o.zarr" / ".dlpipe_complete").exists()


def test_tile_warns_about_a_missing_chunk_of_a_zarr_input(tmp_path: Path) -> None:
    image, _ = phantom((8, 32, 32))
    image[:4, :16, 16:] = 0  # an all-fill chunk that Zarr leaves out
    src = zarr.create_array(tmp_path / "in.zarr", shape=image.shape, chunks=(4, 16, 16), dtype="u1")
    src[:] = image
    assert not (tmp_path / "in.zarr" / "c" / "0" / "0" / "1").exists()
    code, _, err = dlpipe("tile", tmp_path / "in.zarr", "--out", tmp_path / "o.zarr", cwd=tmp_path)
    assert code == 0, err
    assert "chunk c/0/0/1 is absent" in err
    out = zarr.open_array(tmp_path / "o.zarr" / "0", mode="r")
    assert np.array_equal(out[:], image)
