"""COCO and DSB2018 (one mask per object) readers: real files, the dataset layout, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import zarr

from dlpipe.annotations import read_coco, read_instance_folders, read_objects
from dlpipe.annotations.coco import rle_decode


@pytest.fixture(scope="module")
def creme(shared_data: Path) -> Path:
    path = shared_data / "creme" / "data" / "ds25s"
    if not path.is_dir():
        pytest.skip("no ../shared/data/creme")
    return path


@pytest.fixture(scope="module")
def dsb(shared_data: Path) -> Path:
    path = shared_data / "dsb2018" / "stage1_train"
    if not path.is_dir():
        pytest.skip("no ../shared/data/dsb2018")
    return path


def test_coco_creme_real_files(creme, tmp_path, run_cli):
    out = tmp_path / "creme.zarr"
    fov = creme / "fov200nm"
    code, err = run_cli(
        "import", "coco", fov / "clean.json", "--images", fov / "imgs", "--out", out
    )
    assert code == 0, err
    g = zarr.open_group(str(out), mode="r")
    assert g["images"].shape == (16, 512, 512) and g["images"].dtype == np.uint8
    assert g["instances"].dtype == np.uint32 and g["semantic"].dtype == np.uint8
    assert g.attrs["classes"] == ["background", "hcloop"]
    assert g.attrs["image_names"] == [f"{i}.png" for i in range(1, 17)]
    assert (out / ".dlpipe_complete").is_file()
    doc = json.loads((fov / "clean.json").read_text())
    per_image = {e["file_name"]: 0 for e in doc["images"]}
    names = {e["id"]: e["file_name"] for e in doc["images"]}
    for a in doc["annotations"]:
        per_image[names[a["image_id"]]] += 1
    counts = [int(g["instances"][i].max()) for i in range(16)]
    assert counts == [per_image[n] for n in g.attrs["image_names"]] and sum(counts) == 186
    rows = read_objects(out)
    assert len(rows) == 186 and {r["label"] for r in rows} == {"hcloop"}
    for i, name in enumerate(g.attrs["image_names"]):
        assert np.array_equal(g["images"][i], iio.imread(fov / "imgs" / name))
        truth = iio.imread(fov / "masks1" / name) > 0  # the authors' binary masks
        ours = g["semantic"][i] > 0
        assert (truth & ours).sum() / (truth | ours).sum() > 0.85, name
    # the first polygon of the file, hand-checked: box (248, 271)-(274, 291), area 371.5
    first = doc["annotations"][0]
    i = g.attrs["image_names"].index(names[first["image_id"]])
    ys, xs = np.nonzero(g["instances"][i] == 1)
    x, y, w, h = first["bbox"]
    assert xs.min() >= x and ys.min() >= y and xs.max() < x + w and ys.max() < y + h
    assert abs(len(ys) - first["area"]) < 0.1 * first["area"]


def test_dsb2018_real_files_padded(dsb, tmp_path, run_cli):
    ids = [
        "0bf4b144167694b6846d584cf52c458f34f28fcae75328a2a096c8214e01c0d0",
        "0402a81e75262469925ea893b6706183832e85324f7b1e08e634129f5d522cdd",
    ]
    out = tmp_path / "dsb.zarr"
    code, err = run_cli("import", "dsb2018", dsb, "--ids", ",".join(ids), "--out", out)
    assert code == 0, err
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["image_names"] == ids
    assert g.attrs["image_sizes"] == [[256, 256], [260, 347]]
    assert g["images"].shape == (2, 260, 347)  # grey stored as RGBA (R = G = B): made grey
    assert g.attrs["classes"] == ["background", "nucleus"]
    for i, sid in enumerate(ids):
        masks = sorted((dsb / sid / "masks").glob("*.png"))
        h, w = g.attrs["image_sizes"][i]
        inst = g["instances"][i][:h, :w]
        assert int(inst.max()) == len(masks)
        for k, mp in enumerate(masks[:5], start=1):
            assert np.array_equal(inst == k, iio.imread(mp) > 0), mp.name
        img = iio.imread(dsb / sid / "images" / f"{sid}.png")
        assert (img[..., 0] == img[..., 2]).all()
        assert np.array_equal(g["images"][i][:h, :w], img[..., 0])
    assert (g["images"][0][256:] == 0).all() and (g["instances"][0][:, 256:] == 0).all()
    assert [int(v) for v in g.attrs["image_sizes"][0]] == [256, 256]


def test_rle_decode_hand_checked():
    # 3x2 image, column-major runs: 1 background, 2 object, 3 background
    m = rle_decode({"counts": [1, 2, 3], "size": [3, 2]}, 3, 2)
    assert m.tolist() == [[False, False], [True, False], [True, False]]
    # the same as pycocotools' compressed string "12" ('1' = 1, '2' = 2, then "3" = 3)
    assert rle_decode({"counts": "123", "size": [3, 2]}, 3, 2).tolist() == m.tolist()


def _coco(tmp_path: Path, annotations=None, categories=None, name="a.png") -> Path:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir(exist_ok=True)
    iio.imwrite(img_dir / "a.png", np.zeros((8, 10), np.uint8))
    doc = {
        "images": [{"id": 1, "file_name": name, "width": 10, "height": 8}],
        "annotations": annotations
        if annotations is not None
        else [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 0,
                "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "iscrowd": 1,
                "segmentation": {"counts": [80], "size": [8, 10]},
            },
        ],
        "categories": categories or [{"id": 3, "name": "loop"}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_polygon_pixel_centres_and_crowd(tmp_path):
    summary = read_coco(_coco(tmp_path), tmp_path / "imgs", tmp_path / "o.zarr")
    assert summary["objects"] == 1 and summary["skipped_crowd"] == 1
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    inst = g["instances"][0]
    # square (1, 1)-(5, 4): pixel centres x = 1.5..4.5, y = 1.5..3.5 -> rows 1-3, cols 1-4
    expect = np.zeros((8, 10), np.uint32)
    expect[1:4, 1:5] = 1
    assert np.array_equal(inst, expect)
    assert g.attrs["classes"] == ["background", "loop"] and int(g["semantic"][0].max()) == 1


def test_bad_input_exit_2(tmp_path, run_cli):
    out = tmp_path / "o.zarr"
    code, err = run_cli(
        "import", "coco", tmp_path / "none.json", "--images", tmp_path, "--out", out
    )
    assert code == 2 and "COCO annotations file not found" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, err = run_cli("import", "coco", bad, "--images", tmp_path, "--out", out)
    assert code == 2 and "not a JSON file" in err
    wrong = _coco(
        tmp_path, annotations=[{"id": 7, "image_id": 1, "category_id": 9, "segmentation": []}]
    )
    code, err = run_cli("import", "coco", wrong, "--images", tmp_path / "imgs", "--out", out)
    assert code == 2 and "annotation 7 has unknown category 9" in err
    missing = _coco(tmp_path, name="b.png")
    code, err = run_cli("import", "coco", missing, "--images", tmp_path / "imgs", "--out", out)
    assert code == 2 and "image 'b.png' of the JSON not found" in err
    # DSB layout: a mask of the wrong size, and an unknown id
    s = tmp_path / "dsb" / "s1"
    (s / "images").mkdir(parents=True)
    (s / "masks").mkdir()
    iio.imwrite(s / "images" / "s1.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(s / "masks" / "m1.png", np.full((8, 9), 255, np.uint8))
    code, err = run_cli("import", "dsb2018", tmp_path / "dsb", "--out", out)
    assert code == 2 and "mask is 9x8, its image 8x8" in err
    code, err = run_cli("import", "dsb2018", tmp_path / "dsb", "--ids", "s2", "--out", out)
    assert code == 2 and "sample 's2' not found" in err
    assert not out.exists()


def test_instance_folders_overlap_and_single_sample(tmp_path):
    s = tmp_path / "s1"
    (s / "images").mkdir(parents=True)
    (s / "masks").mkdir()
    iio.imwrite(s / "images" / "s1.png", np.full((6, 6), 9, np.uint8))
    a = np.zeros((6, 6), np.uint8)
    a[0:3, 0:3] = 255
    b = np.zeros((6, 6), np.uint8)
    b[2:5, 2:5] = 255
    iio.imwrite(s / "masks" / "a.png", a)
    iio.imwrite(s / "masks" / "b.png", b)
    iio.imwrite(s / "masks" / "c.png", np.zeros((6, 6), np.uint8))
    summary = read_instance_folders(s, tmp_path / "o.zarr", class_name="cell")
    assert summary["overlap_pixels"] == 1 and summary["empty_masks"] == 1
    inst = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")["instances"][0]
    assert int((inst == 1).sum()) == 8 and int((inst == 2).sum()) == 9  # b wins at (2, 2)
    rgb = read_instance_folders(s, tmp_path / "rgb.zarr", rgb=True)
    images = zarr.open_group(str(tmp_path / "rgb.zarr"), mode="r")["images"]
    assert rgb["images"] == 1 and images.shape == (1, 6, 6, 3) and (images[0] == 9).all()
