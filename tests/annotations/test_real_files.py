"""Every CVAT file in ../shared/data/cvat, with objects and pixel counts worked out by hand.

Pixel rule used in the hand counts: pixel (row i, col j) is inside when its centre
(x = j + 0.5, y = i + 0.5) is; for an axis-aligned box that is
xtl <= j + 0.5 < xbr and ytl <= i + 0.5 < ybr (left/top edges in, right/bottom out).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import zarr
from matplotlib.path import Path as MplPath

from dlpipe.annotations import CvatReader, convert, read_objects, targets
from dlpipe.errors import UserError

NO_IMG = {"read_images": False}


def _poly_ref(points: list[tuple[float, float]], h: int, w: int) -> np.ndarray:
    """Independent reference: matplotlib's point-in-polygon at every pixel centre."""
    yy, xx = np.mgrid[0:h, 0:w]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    return MplPath(np.asarray(points)).contains_points(centres).reshape(h, w)


def _points(el_text: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in p.split(",")) for p in el_text.split(";")]


# ---------------------------------------------------------------- CVAT's documentation example
DOC_MASK = [  # 13 x 15, runs 3,5,7,7,5,9,3,11,2,11,2,12,1,12,1,26,1,12,1,12,2,11,3,9,5,7,7,5,3
    "0001111100000",
    "0011111110000",
    "0111111111000",
    "1111111111100",
    "1111111111100",
    "1111111111110",
    "1111111111110",
    "1111111111111",
    "1111111111111",
    "0111111111111",
    "0111111111111",
    "0011111111111",
    "0001111111110",
    "0000111111100",
    "0000011111000",
]


def test_doc_example_mask_rle_exact(cvat_data: Path) -> None:
    reader = CvatReader(str(cvat_data / "cvat_docs/cvat_images_1.1_doc_example.xml"))
    (frame,) = list(reader.frames())
    (mask,) = [s for s in frame.shapes if s.kind == "mask"]
    expected = np.array([[c == "1" for c in row] for row in DOC_MASK])
    assert mask.mask.shape == (15, 13)
    assert (mask.left, mask.top) == (707, 888)
    np.testing.assert_array_equal(mask.mask, expected)
    assert mask.mask.sum() == 149  # 5+7+9+11+11+12+12+26+12+12+11+9+7+5
    assert reader.meta.labels == ["car", "traffic_line", "wheel", "plate", "s1"]  # no sub-labels
    assert reader.counts.counted == {"skeleton": 1}


def test_doc_example_converted(cvat_data: Path, tmp_path: Path) -> None:
    xml = cvat_data / "cvat_docs/cvat_images_1.1_doc_example.xml"
    s = convert(xml, tmp_path / "d.zarr", params=NO_IMG)
    assert s["counts"]["ignored_polyline"] == 2 and s["counts"]["ignored_points"] == 1
    assert s["counts"]["counted_skeleton"] == 1 and s["counts"]["tags"] == 1
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="r")
    assert g.attrs["classes"] == ["background", "car", "traffic_line", "wheel", "plate", "s1"]
    assert g.attrs["image_names"] == ["filename000.jpg"]
    assert g["semantic"].shape == (1, 1200, 1600) and g["semantic"].dtype == np.uint8
    assert g["instances"].dtype == np.uint32
    rows = read_objects(tmp_path / "d.zarr")
    kinds = [(r["kind"], r["label"], r["instance_id"]) for r in rows]
    assert kinds == [
        ("tag", "good_frame", 0),
        ("box", "plate", 1),
        ("polygon", "car", 2),
        ("mask", "car", 3),
    ]
    box = rows[1]
    # plate xtl=797.33 xbr=965.52: columns 797..965 (169); ytl=870.92 ybr=928.94: rows 871..928 (58)
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == (797, 871, 966, 929)
    assert box["area"] == 169 * 58
    assert box["z_order"] == 4
    sem = g["semantic"][0]
    inst = g["instances"][0]
    # the car polygon against an independent point-in-polygon reference
    text = (xml.read_text().split('<polygon label="car" points="')[1]).split('"')[0]
    ref = _poly_ref(_points(text), 1200, 1600)
    plate = np.zeros_like(ref)
    plate[871:929, 797:966] = True
    assert rows[2]["area"] == int((ref & ~plate).sum())  # the plate (z 4) covers the car (z 1)
    np.testing.assert_array_equal(sem == 4, plate)
    np.testing.assert_array_equal(sem == 1, ref & ~plate)
    # the mask (z 0) lies under the car polygon (z 1): fully hidden, visible area 0
    assert rows[3]["area"] == 0
    assert not (inst == 3).any()
    t = targets(tmp_path / "d.zarr", 0)
    assert t["labels"].tolist() == [4, 1]
    assert t["boxes"].tolist()[0] == [797.0, 871.0, 966.0, 929.0]
    assert t["masks"].shape == (2, 1200, 1600)


def test_doc_example_polylines_drawn(cvat_data: Path, tmp_path: Path) -> None:
    xml = cvat_data / "cvat_docs/cvat_images_1.1_doc_example.xml"
    s = convert(
        xml, tmp_path / "d.zarr", params=NO_IMG | {"polyline_width": 2.0, "points_radius": 3.0}
    )
    assert "ignored_polyline" not in s["counts"]
    rows = [r for r in read_objects(tmp_path / "d.zarr") if r["kind"] == "polyline"]
    # (462.1, 0) -> (126.8, 1200): length 1245.96 px, width 2 -> about 2492 px
    length = np.hypot(462.1 - 126.8, 1200.0)
    assert abs(rows[0]["area"] - 2 * length) / (2 * length) < 0.03
    pts = [r for r in read_objects(tmp_path / "d.zarr") if r["kind"] == "points"]
    assert len(pts) == 1 and pts[0]["area"] > 4 * 25  # four discs of radius 3 (about 28 px)


# ---------------------------------------------------------------- datumaro
def test_datumaro_task_label_errors_and_map(cvat_data: Path, tmp_path: Path, run_cli) -> None:
    d = cvat_data / "datumaro/tests/assets/cvat_dataset/for_images/export_task"
    # the two images are 8x8 and 10x10: a size mismatch unless padded
    code, err = run_cli(
        "cvat", d / "train.xml", "--images", d / "images", "--out", tmp_path / "t.zarr"
    )
    assert code == 2 and "img1.jpg' is 10x10 but the dataset is 8x8" in err
    pad = json.dumps(
        {"tracking": {"enabled": False}, "cvat": {"size": [10, 10], "size_mismatch": "pad"}}
    )
    code, err = run_cli(
        "cvat",
        d / "train.xml",
        "--images",
        d / "images",
        "--out",
        tmp_path / "t.zarr",
        config_json=pad,
    )
    assert code == 2 and "label '' is not one of the classes" in err
    assert not (tmp_path / "t.zarr").exists()
    with pytest.raises(UserError, match="maps '' to 'nope', which is not a class"):
        convert(
            d / "train.xml",
            tmp_path / "t.zarr",
            images=d / "images",
            params={"label_map": {"": "nope"}},
        )
    s = convert(
        d / "train.xml",
        tmp_path / "t.zarr",
        images=d / "images",
        params={"label_map": {"": "label2"}, "size": [10, 10], "size_mismatch": "pad"},
    )
    assert s["counts"]["ignored_polyline"] == 1 and s["counts"]["ignored_points"] == 1
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="r")
    assert g["images"].shape[:3] == (2, 10, 10)
    assert not g["images"][0][8:, :].any() and not g["images"][0][:, 8:].any()  # padded
    sem = g["semantic"][:]
    box = np.zeros((10, 10), np.uint8)
    box[2:4, 0:4] = 1  # xtl=0 xbr=4 ytl=2 ybr=4
    np.testing.assert_array_equal(sem[0], box)
    # triangle (1,2) (3,4) (6,5): row 2 [1.5, 1.83) -> col 1; row 3 [2.5, 3.5) -> col 2;
    # row 4 [4.5, 5.17) -> col 4
    tri = np.zeros((10, 10), np.uint8)
    tri[2, 1] = tri[3, 2] = tri[4, 4] = 2
    np.testing.assert_array_equal(sem[1], tri)
    rows = read_objects(tmp_path / "t.zarr")
    assert rows[0]["occluded"] == 1 and rows[0]["z_order"] == 1
    assert rows[0]["attributes"] == {"a1": "true", "a2": "v3", "a3": "0003", "a4": "2.4"}
    assert (rows[1]["x1"], rows[1]["y1"], rows[1]["x2"], rows[1]["y2"], rows[1]["area"]) == (
        1,
        2,
        5,
        5,
        3,
    )


def test_datumaro_project_subsets(cvat_data: Path, tmp_path: Path) -> None:
    d = cvat_data / "datumaro/tests/assets/cvat_dataset/for_images/export_project"
    s = convert(
        d / "annotations.xml",
        tmp_path / "p.zarr",
        images=d / "images",
        params={"size": [10, 10], "size_mismatch": "pad"},
    )
    assert s["images"] == 6 and s["objects_per_label"] == {"label1": 6}
    g = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    # sorted by image id, ties in document order
    assert g.attrs["image_ids"] == [0, 0, 0, 1, 1, 1]
    assert sorted(g.attrs["subsets"][:3]) == ["Test", "Train", "Validation"]
    assert g.attrs["image_names"] == ["img0.jpg"] * 3 + ["img1.jpg"] * 3
    areas = [r["area"] for r in read_objects(tmp_path / "p.zarr")]
    assert sorted(areas) == [3, 3, 3, 8, 8, 8]


def test_datumaro_video_tracks(cvat_data: Path, tmp_path: Path, run_cli) -> None:
    d = cvat_data / "datumaro/tests/assets/cvat_dataset/for_video"
    # frames 10, 13, 16, 19 (start 10, stop 19, step 3); frame_000019 is not in the folder
    code, err = run_cli(
        "cvat", d / "annotations.xml", "--images", d / "images", "--out", tmp_path / "v.zarr"
    )
    assert code == 2 and "frame_000019" in err and "--skip-missing" in err
    s = convert(
        d / "annotations.xml",
        tmp_path / "v.zarr",
        images=d / "images",
        params={"skip_missing": True},
    )
    assert s["images"] == 3 and s["counts"]["missing_images"] == 1
    assert s["counts"]["ignored_points"] == 1 and s["counts"]["ignored_polyline"] == 1
    g = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    assert g.attrs["image_names"] == ["frame_000010", "frame_000013", "frame_000016"]
    assert g.attrs["classes"] == ["background", "klhg", "z U k", "II"]
    assert g["images"].shape[1:3] == (20, 25)
    sem = g["semantic"][:]
    exp = np.zeros((20, 25), np.uint8)
    exp[4:5, 3:10] = 3  # box 3,4 - 10,5 at frame 10; outside at 13 and 16
    np.testing.assert_array_equal(sem[0], exp)
    assert not sem[1].any() and not sem[2].any()
    (row,) = read_objects(tmp_path / "v.zarr")
    assert (row["track_id"], row["occluded"], row["area"]) == (0, 1, 7)


# ---------------------------------------------------------------- dagshub
def test_dagshub_project_negative_z_order(cvat_data: Path, tmp_path: Path) -> None:
    xml = cvat_data / "dagshub/tests/fs_import/cvat/annotations.xml"
    s = convert(xml, tmp_path / "p.zarr", params=NO_IMG)
    assert s["classes"] == ["background", "Baby Yoda", "Ship", "Yoda", "Robot", "Person"]
    assert s["objects_per_label"] == {"Baby Yoda": 2, "Ship": 1, "Person": 2, "Robot": 3}
    assert s["counts"]["counted_skeleton"] == 1 and s["counts"]["ignored_points"] == 1
    g = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    rows = read_objects(tmp_path / "p.zarr")
    yoda = rows[0]
    # xtl=748.06 xbr=1151.04 -> cols 748..1150 (403); ytl=379.10 ybr=952.24 -> rows 379..951 (573)
    assert (yoda["x1"], yoda["x2"], yoda["y1"], yoda["y2"]) == (748, 1151, 379, 952)
    assert yoda["area"] == 403 * 573
    sem = g["semantic"][1]
    text = xml.read_text().split('<polygon label="Ship" source="manual" occluded="0" points="')[1]
    ship = _poly_ref(_points(text.split('"')[0]), 1200, 1920)
    person = np.zeros_like(ship)
    person[465:904, 769:1060] = True  # 768.95..1060.50 x 464.68..904.48
    both = ship & person
    assert both.sum() > 1000
    assert (sem[both] == 5).all()  # z_order -1 ship is painted under the person box (z 0)
    assert (sem[ship & ~person & (sem != 4) & (sem != 1)] == 2).all()
    ship_row = next(r for r in rows if r["label"] == "Ship")
    assert ship_row["z_order"] == -1 and ship_row["area"] == int((sem == 2).sum())


def test_dagshub_grouping_unknown_labels(cvat_data: Path, tmp_path: Path, run_cli) -> None:
    xml = cvat_data / "dagshub/tests/cvat/res/pose_grouping.xml"
    code, err = run_cli("cvat", xml, "--no-images", "--out", tmp_path / "g.zarr")
    assert code == 2 and "label 'Pointy_1' is not one of the classes" in err
    s = convert(xml, tmp_path / "g.zarr", params=NO_IMG | {"unknown_label": "skip"})
    assert s["counts"]["skipped_unknown_label"] == 5 and s["counts"]["counted_skeleton"] == 2
    mapping = {k: "Pointy_Box" for k in ("Pointy_1", "Pointy_2", "Pointy_3", "Pointy_misc")}
    convert(xml, tmp_path / "m.zarr", params=NO_IMG | {"label_map": mapping})
    rows = read_objects(tmp_path / "m.zarr")
    assert [r["group_id"] for r in rows] == [1, 2, 2, 3, 0]
    assert {r["label"] for r in rows} == set(mapping)
    # the second Pointy_2 box (155.59,625.98)-(431.03,800.76) sits inside the first one
    # (151.59,624.98)-(431.03,800.76), same z_order: the later one is on top
    # second: cols 156..430 (275; 155.59 <= j+0.5 < 431.03), rows 626..800 (175)
    assert rows[2]["area"] == 275 * 175
    # first: cols 152..430 (279), rows 625..800 (176), minus the part the second covers
    assert rows[1]["area"] == 279 * 176 - 275 * 175


def test_dagshub_video_outside(cvat_data: Path, tmp_path: Path, run_cli) -> None:
    xml = cvat_data / "dagshub/tests/cvat_video/res/sample_video.xml"
    code, err = run_cli("cvat", xml, "--no-images", "--out", tmp_path / "v.zarr")
    assert code == 2 and "label 'person'" in err  # this file has no <labels>
    code, err = run_cli(
        "cvat", xml, "--no-images", "--classes", "person,car", "--out", tmp_path / "v.zarr"
    )
    assert code == 0, err
    g = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    assert g["semantic"].shape == (5, 1080, 1920)
    rows = read_objects(tmp_path / "v.zarr")
    per_frame = [[r["label"] for r in rows if r["image"] == k] for k in range(5)]
    assert per_frame == [
        ["person", "car"],
        ["person", "car"],
        ["person", "car"],
        ["person"],
        ["person", "car"],
    ]
    assert rows[0]["area"] == 50 * 120 and rows[1]["area"] == 150 * 100
    assert [r["occluded"] for r in rows if r["label"] == "person"] == [0, 0, 1, 0, 0]


# ---------------------------------------------------------------- coral (short RLEs)
def test_coral_short_rle_strict_and_lenient(cvat_data: Path, tmp_path: Path, run_cli) -> None:
    xml = cvat_data / "coral_masks/annotations.xml"
    code, err = run_cli("cvat", xml, "--no-images", "--out", tmp_path / "c.zarr")
    assert code == 2
    assert "image '00_20230116_MIS1_RC_Aspat_T04_08.jpg', mask #" in err
    assert "RLE runs sum to" in err and "--lenient" in err
    assert not (tmp_path / "c.zarr").exists()
    reader = CvatReader(str(xml), lenient=True)
    masks = [s for f in reader.frames() for s in f.shapes if s.kind == "mask"]
    assert len(masks) == 273 and reader.counts.padded_rle == 273
    raw = re.findall(r'rle="([^"]*)"[^>]*width="(\d+)" height="(\d+)"', xml.read_text())
    assert len(raw) == 273
    for shape, (rle, w, h) in zip(masks, raw, strict=True):
        runs = [int(v) for v in rle.split(",")]
        assert shape.mask.shape == (int(h), int(w))
        assert int(shape.mask.sum()) == sum(runs[1::2])  # foreground runs only
        assert sum(runs) < int(w) * int(h)  # every RLE in this file is short
        assert not shape.mask.ravel()[sum(runs) :].any()  # padded with background
