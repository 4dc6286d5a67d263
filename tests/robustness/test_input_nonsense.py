"""Issue 17 item 10: nonsense that was accepted silently is refused or reported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _input_helpers import TRAIN_TINY, cvat_xml, dlpipe, image_xml, leftovers, one_line_error


@pytest.mark.parametrize(
    "box",
    [
        '<box label="a" xtl="5" ytl="0" xbr="2" ybr="2"/>',  # fast (columnar) path
        '<box label="a" xtl="0" ytl="4" xbr="2" ybr="1"/>'
        '<mask label="b" left="0" top="0" width="1" height="1" rle="0, 1"/>',  # general path
    ],
)
def test_reversed_box_is_refused_unless_lenient(tmp_path: Path, box: str) -> None:
    xml = tmp_path / "rev.xml"
    xml.write_text(cvat_xml(image_xml(box)))
    code, _, err = dlpipe("cvat", xml, "--no-images", "--out", tmp_path / "o.zarr", cwd=tmp_path)
    line = one_line_error(err)
    assert code == 2 and "rev.xml" in line and "image 'i.png', box #" in line
    assert "reversed box" in line and "--lenient" in line
    assert leftovers(tmp_path, "o.zarr") == []
    code, _, err = dlpipe(
        "cvat", xml, "--no-images", "--lenient", "--out", tmp_path / "o.zarr", cwd=tmp_path
    )
    assert code == 0, err
    sem = zarr.open_group(tmp_path / "o.zarr", mode="r")["semantic"][0]
    assert not (sem == 1).any()  # the box is not painted
    assert "'skipped_invalid': 1" in err


@pytest.mark.parametrize(
    ("classes", "says"),
    [
        ("pore,pore", "class 'pore' is listed twice"),
        ("background,pore", "'background' is implicit as class 0"),
    ],
)
def test_bad_class_lists(tmp_path: Path, classes: str, says: str) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(cvat_xml(image_xml(), labels=("pore",)))
    code, _, err = dlpipe(
        "cvat",
        xml,
        "--no-images",
        "--classes",
        classes,
        "--out",
        tmp_path / "o.zarr",
        cwd=tmp_path,
    )
    line = one_line_error(err)
    assert code == 2 and "cvat.classes" in line and says in line
    assert leftovers(tmp_path, "o.zarr") == []


@pytest.mark.parametrize("name", ["../secret.png", "/etc/secret.png", "sub/../../secret.png"])
def test_coco_image_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(secret)
    doc = {
        "images": [{"id": 1, "file_name": name, "width": 4, "height": 4}],
        "annotations": [],
        "categories": [{"id": 1, "name": "pore"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(doc))
    code, _, err = dlpipe(
        "import",
        "coco",
        tmp_path / "coco.json",
        "--images",
        images,
        "--out",
        tmp_path / "o.zarr",
        cwd=tmp_path,
    )
    line = one_line_error(err)
    assert code == 2 and "coco.json" in line and repr(name) in line and "refused" in line
    assert leftovers(tmp_path, "o.zarr") == []


def test_training_with_only_class_0_warns(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (12, 32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", np.zeros_like(image))
    vol = tmp_path / "vol.zarr"
    code, _, err = dlpipe(
        "tile", tmp_path / "img.tif", "--labels", tmp_path / "lab.tif", "--out", vol, cwd=tmp_path
    )
    assert code == 0, err
    code, _, err = dlpipe(
        "train",
        vol,
        "--out",
        tmp_path / "model_out",
        *TRAIN_TINY,
        "--set",
        'classes=["matrix","fibre"]',
        cwd=tmp_path,
    )
    assert code == 0, err
    assert err.count("validation labels hold no voxel of class(es) fibre") == 1
    card = json.loads((tmp_path / "model_out" / "card.json").read_text())
    # absent from the truth: NaN (strict JSON null), or 0 where the model predicts it
    assert card["val_jaccard"]["fibre"] in (None, 0.0)


def test_float32_near_its_maximum_gives_no_overflow_warning(tmp_path: Path) -> None:
    data = np.full((6, 16, 16), 3.0e38, np.float32)
    data[::2] = -3.0e38
    tifffile.imwrite(tmp_path / "f.tif", data)
    out = tmp_path / "o.zarr"
    code, _, err = dlpipe("tile", tmp_path / "f.tif", "--out", out, cwd=tmp_path)
    assert code == 0, err
    assert "RuntimeWarning" not in err and "overflow" not in err
    level1 = zarr.open_group(out, mode="r")["1"][:]
    assert np.isfinite(level1).all() and np.allclose(level1, 0.0)
