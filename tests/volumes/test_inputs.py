"""Every reader, and every bad input of the issue through the CLI (exit 2, one line)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from dlpipe.errors import UserError
from dlpipe.stores import open_volume
from dlpipe.volumes import open_source

VOL = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7) * 100


def _roundtrip(run_tile, src: Path | str, out: Path, *extra: str) -> np.ndarray:
    code, err = run_tile(src, "--out", out, "--chunks", "2", "4", "4", "--levels", "2", *extra)
    assert code == 0, err
    opened = open_volume(out)
    image, labels, attrs = opened.image, opened.labels, opened.attrs
    assert labels is None and attrs["complete"] is True
    return image[:]


def test_raw_with_cli_layout_and_big_endian(tmp_path: Path, run_tile) -> None:
    raw = tmp_path / "v.raw"
    VOL.astype(">u2").tofile(raw)
    got = _roundtrip(
        run_tile,
        raw,
        tmp_path / "o.zarr",
        "--raw-shape",
        "5",
        "6",
        "7",
        "--raw-dtype",
        "uint16",
        "--byte-order",
        "big",
    )
    np.testing.assert_array_equal(got, VOL)


def test_raw_with_info_sidecar(tmp_path: Path, run_tile) -> None:
    raw = tmp_path / "v.raw"
    VOL.astype(np.int16).tofile(raw)
    (tmp_path / "v.raw.info").write_text("nz = 5\nny = 6\nnx = 7\ndtype = int16\n")
    got = _roundtrip(run_tile, raw, tmp_path / "o.zarr")
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, VOL.astype(np.int16))


def test_raw_with_yaml_sidecar(tmp_path: Path) -> None:
    raw = tmp_path / "v.bin"
    VOL.astype(np.float32).tofile(raw)
    (tmp_path / "v.yaml").write_text("shape: [5, 6, 7]\ndtype: float32\nbyte_order: little\n")
    src = open_source(raw)
    np.testing.assert_array_equal(src.read(1, 3), VOL[1:3].astype(np.float32))


def test_npy_hdf5_zarr_v2_v3(tmp_path: Path, run_tile) -> None:
    np.save(tmp_path / "v.npy", VOL)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("scan/data", data=VOL, chunks=(1, 6, 7))
        f.create_dataset("other", data=np.zeros(3))
    for fmt in (2, 3):
        zarr.create_array(tmp_path / f"v{fmt}.zarr", data=VOL, chunks=(2, 3, 3), zarr_format=fmt)
    for i, src in enumerate(
        [
            tmp_path / "v.npy",
            f"{tmp_path / 'v.h5'}:/scan/data",
            tmp_path / "v2.zarr",
            tmp_path / "v3.zarr",
        ]
    ):
        np.testing.assert_array_equal(_roundtrip(run_tile, src, tmp_path / f"o{i}.zarr"), VOL)
    with pytest.raises(UserError, match="name the dataset"):
        open_source(tmp_path / "v.h5")


def test_slice_folder_natural_order(tmp_path: Path, run_tile) -> None:
    d = tmp_path / "slices"
    d.mkdir()
    vol8 = (VOL // 100).astype(np.uint8)
    for z in range(5):  # z=10.. names sort wrongly as text: s10 < s11 < s12 < s8 < s9
        Image.fromarray(vol8[z]).save(d / f"s{z + 8}.png")
    (d / "notes.txt").write_text("ignored")
    np.testing.assert_array_equal(_roundtrip(run_tile, d, tmp_path / "o.zarr"), vol8)


def test_tiff_compressed_pages(tmp_path: Path, run_tile) -> None:
    tifffile.imwrite(tmp_path / "v.tif", VOL, compression="zlib")
    np.testing.assert_array_equal(
        _roundtrip(run_tile, tmp_path / "v.tif", tmp_path / "o.zarr"), VOL
    )


# -- bad input --------------------------------------------------------------------------
def _bad(run_tile, tmp_path: Path, src, *extra, match: str) -> str:
    out = tmp_path / "bad.zarr"
    code, err = run_tile(src, "--out", out, *extra)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and match in err, err
    return err


def test_raw_size_mismatch_states_both(tmp_path: Path, run_tile) -> None:
    raw = tmp_path / "v.raw"
    VOL.tofile(raw)  # 420 bytes of uint16: 210 voxels
    err = _bad(
        run_tile,
        tmp_path,
        raw,
        "--raw-shape",
        "5",
        "6",
        "8",
        "--raw-dtype",
        "uint16",
        match="holds 420 bytes",
    )
    assert "5x6x8 uint16 needs 480 bytes" in err
    assert not (tmp_path / "bad.zarr").exists()


def test_raw_without_layout(tmp_path: Path, run_tile) -> None:
    VOL.tofile(tmp_path / "v.raw")
    _bad(run_tile, tmp_path, tmp_path / "v.raw", match="needs --raw-shape")


@pytest.mark.parametrize("dtype", ["float64", "int32", "uint32"])
def test_unsupported_dtype(tmp_path: Path, run_tile, dtype: str) -> None:
    np.save(tmp_path / "v.npy", VOL.astype(dtype))
    _bad(run_tile, tmp_path, tmp_path / "v.npy", match=f"unsupported dtype {dtype}")


def test_unsupported_raw_dtype(tmp_path: Path, run_tile) -> None:
    VOL.tofile(tmp_path / "v.raw")
    _bad(
        run_tile,
        tmp_path,
        tmp_path / "v.raw",
        "--raw-shape",
        "5",
        "6",
        "7",
        "--raw-dtype",
        "complex64",
        match="unsupported dtype complex64",
    )


def test_slices_of_different_sizes_name_first_odd_file(tmp_path: Path, run_tile) -> None:
    d = tmp_path / "slices"
    d.mkdir()
    for i in range(1, 12):
        shape = (8, 9) if i in (10, 11) else (8, 8)
        Image.fromarray(np.zeros(shape, np.uint8)).save(d / f"img{i}.png")
    err = _bad(run_tile, tmp_path, d, match="differs from the first slice img1.png")
    assert "img10.png" in err and "img11.png" not in err


def test_nan_is_reported_then_replaced(tmp_path: Path, run_tile) -> None:
    vol = VOL.astype(np.float32)
    vol[3, 2, 1] = np.nan
    vol[4, 0, 0] = np.inf
    np.save(tmp_path / "v.npy", vol)
    err = _bad(run_tile, tmp_path, tmp_path / "v.npy", match="non-finite values")
    assert "1 NaN, 1 infinite" in err and "first in slice 3" in err
    assert not (tmp_path / "bad.zarr").exists()
    got = _roundtrip(
        run_tile, tmp_path / "v.npy", tmp_path / "ok.zarr", "--replace-nonfinite", "-1"
    )
    assert got[3, 2, 1] == -1 and got[4, 0, 0] == -1 and got[0, 0, 1] == 100
    attrs = open_volume(tmp_path / "ok.zarr").attrs
    assert attrs["nonfinite_replaced"] == {"nan": 1, "inf": 1, "value": -1.0}
    assert attrs["statistics"]["min"] == -1.0


def test_empty_inputs(tmp_path: Path, run_tile) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    _bad(run_tile, tmp_path, tmp_path / "empty.tif", match="input is empty (0 bytes)")
    (tmp_path / "nothing").mkdir()
    _bad(run_tile, tmp_path, tmp_path / "nothing", match="input is empty: no slice images")
    np.save(tmp_path / "zero.npy", np.zeros((0, 4, 4), np.uint8))
    _bad(run_tile, tmp_path, tmp_path / "zero.npy", match="input is empty (shape (0, 4, 4))")


def test_unreadable_inputs(tmp_path: Path, run_tile) -> None:
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff file at all")
    _bad(run_tile, tmp_path, tmp_path / "junk.tif", match="cannot read TIFF")
    _bad(run_tile, tmp_path, tmp_path / "missing.tif", match="input not found")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    _bad(run_tile, tmp_path, tmp_path / "junk.npy", match="cannot read .npy file")
    d = tmp_path / "slices"
    d.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "0.png")
    (d / "1.png").write_bytes(b"broken png")
    _bad(run_tile, tmp_path, d, match="cannot read slice image")


def test_output_exists_refused_unless_overwrite(tmp_path: Path, run_tile) -> None:
    np.save(tmp_path / "v.npy", VOL)
    out = tmp_path / "o.zarr"
    _roundtrip(run_tile, tmp_path / "v.npy", out)
    code, err = run_tile(tmp_path / "v.npy", "--out", out)
    assert code == 2 and "output exists (use --overwrite" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    code, err = run_tile(tmp_path / "v.npy", "--out", other)
    assert code == 2 and "not a store being written by dlpipe tile" in err
    assert (other / "keep.txt").read_text() == "precious"
    np.save(tmp_path / "v.npy", VOL + 1)
    np.testing.assert_array_equal(
        _roundtrip(run_tile, tmp_path / "v.npy", out, "--overwrite"), VOL + 1
    )


def test_labels_of_other_shape(tmp_path: Path, run_tile) -> None:
    np.save(tmp_path / "v.npy", VOL)
    np.save(tmp_path / "l.npy", np.zeros((5, 6, 6), np.uint8))
    err = _bad(
        run_tile,
        tmp_path,
        tmp_path / "v.npy",
        "--labels",
        tmp_path / "l.npy",
        match="labels shape (5, 6, 6) differs from the shape (5, 6, 7) of the image ",
    )
    # Both files are named: the labels (the error's path) and the image.
    assert str(tmp_path / "l.npy") in err and str(tmp_path / "v.npy") in err


def test_labels_any_integer_type_values_0_255(tmp_path: Path, run_tile) -> None:
    np.save(tmp_path / "v.npy", VOL)
    lab = (VOL % 3).astype(np.uint32)
    np.save(tmp_path / "l.npy", lab)
    code, err = run_tile(
        tmp_path / "v.npy",
        "--out",
        tmp_path / "o.zarr",
        "--labels",
        tmp_path / "l.npy",
        "--chunks",
        "2",
        "4",
        "4",
    )
    assert code == 0, err
    labels = open_volume(tmp_path / "o.zarr").labels
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels[:], lab)
    lab[4, 5, 6] = 300
    np.save(tmp_path / "l.npy", lab)
    _bad(
        run_tile,
        tmp_path,
        tmp_path / "v.npy",
        "--labels",
        tmp_path / "l.npy",
        match="label values must be 0-255, found 0..300 in slices 0-4",
    )
    np.save(tmp_path / "f.npy", lab.astype(np.float32))
    _bad(
        run_tile,
        tmp_path,
        tmp_path / "v.npy",
        "--labels",
        tmp_path / "f.npy",
        match="unsupported dtype float32 (supported: uint8, int8",
    )
