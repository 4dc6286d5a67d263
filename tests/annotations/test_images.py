"""The one image reader and its channel rule (CVAT sources and dataset importers)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from dlpipe.annotations.images import read_image
from dlpipe.errors import UserError

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 255, (6, 5), dtype=np.uint8)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (GREY, GREY),
        (np.stack([GREY, GREY * 0 + 255], axis=2), GREY),  # grey + alpha
        (np.stack([GREY, GREY // 2, GREY // 3, GREY * 0 + 255], axis=2), None),  # RGBA -> RGB
    ],
)
def test_alpha_dropped_single_channel_squeezed(tmp_path: Path, stored, expected) -> None:
    iio.imwrite(tmp_path / "a.png", stored)
    img = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(img, stored[..., :3] if expected is None else expected)


def test_equal_rgb_made_grey_only_when_asked(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "a.png", np.stack([GREY] * 3, axis=2))
    assert read_image(tmp_path / "a.png").shape == (6, 5, 3)  # CVAT: as stored
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", grey_rgb=True), GREY)


def test_bit_depths_and_zip_members(tmp_path: Path) -> None:
    iio.imwrite(tmp_path / "f.tif", GREY.astype(np.float32))
    assert read_image(tmp_path / "f.tif").dtype == np.float32
    with pytest.raises(UserError, match="8 or 16 bit"):
        read_image(tmp_path / "f.tif", bits=(8, 16))
    iio.imwrite(tmp_path / "a.png", GREY)
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as zf:
        zf.write(tmp_path / "a.png", "images/a.png")
        zf.writestr("images/bad.png", b"not a png")
    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        np.testing.assert_array_equal(read_image("images/a.png", zf=zf), GREY)
        with pytest.raises(UserError, match="cannot read image"):
            read_image("images/bad.png", zf=zf)
