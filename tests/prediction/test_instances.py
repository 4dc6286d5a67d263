"""Tiled Mask R-CNN inference: merging across tiles, painting, end to end with a real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.cli import main
from dlpipe.prediction.detections import (
    Detection,
    merge_detections,
    paint_instances,
    same_object,
)
from dlpipe.prediction.maskrcnn import tile_starts

TILE = 64
CLASSES = ["background", "fibre", "pore"]


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _tiles(shape: tuple[int, int], overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    return [
        (y0, x0, min(y0 + TILE, shape[0]), min(x0 + TILE, shape[1]))
        for y0 in tile_starts(shape[0], TILE, overlap)
        for x0 in tile_starts(shape[1], TILE, overlap)
    ]


def _seen(mask: np.ndarray, tile, label: int, score: float) -> Detection | None:
    """What a perfect model sees of ``mask`` in ``tile``: the cut object, as a detection."""
    y0, x0, y1, x1 = tile
    part = mask[y0:y1, x0:x1]
    if not part.any():
        return None
    rows, cols = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
    crop = part[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Detection(label, score, y0 + int(rows[0]), x0 + int(cols[0]), crop.copy(), tile)


def test_tile_grid_covers_image_twice_the_tile() -> None:
    assert tile_starts(128, 64, 0.25) == [0, 48, 64]
    assert tile_starts(50, 64, 0.25) == [0]  # padded
    assert tile_starts(64, 64, 0.25) == [0]


def test_disc_on_tile_borders_becomes_one_instance() -> None:
    """An image twice the tile size; a disc centred on the corner where four tiles meet.

    Nine tiles (starts 0, 48, 64 per axis) each see a part of it (some cut, one whole):
    merged, one instance whose mask is the whole disc, with the best score.
    """
    shape = (128, 128)
    disc = _disc(shape, 63.5, 63.5, 11)
    dets = []
    for k, tile in enumerate(_tiles(shape)):
        d = _seen(disc, tile, 2, 0.5 + 0.01 * k)
        if d is not None:
            dets.append(d)
    assert len(dets) == 9
    merged = merge_detections(dets)
    assert len(merged) == 1
    inst, sem, rows = paint_instances(merged, shape)
    assert np.array_equal(inst > 0, disc)
    assert set(np.unique(sem)) == {0, 2}
    assert rows[0]["area"] == int(disc.sum()) and rows[0]["score"] == pytest.approx(0.58)


def test_object_cut_in_both_tiles_merges_with_imperfect_masks() -> None:
    """Two tiles each see a different part; in their overlap the masks agree up to a ring."""
    shape = (64, 128)
    a_tile, b_tile = (0, 0, 64, 80), (0, 64, 64, 128)
    disc = _disc(shape, 32, 72, 12)  # spans x 60..84: cut by both tiles' borders
    a = _seen(disc, a_tile, 1, 0.9)
    b_mask = disc.copy()
    b_mask[:, 64:66] &= _disc(shape, 32, 72, 10)[:, 64:66]  # b is a little unsure at its edge
    b = _seen(b_mask, b_tile, 1, 0.7)
    assert same_object(a, b)
    (m,) = merge_detections([a, b])
    assert m.score == 0.9
    inst, _, rows = paint_instances([m], shape)
    assert np.array_equal(inst > 0, disc | b_mask)
    assert rows[0]["x1"] == 60 and rows[0]["x2"] == 85


def test_different_objects_are_not_merged() -> None:
    shape = (64, 128)
    a_tile, b_tile = (0, 0, 64, 80), (0, 48, 64, 128)
    left = _disc(shape, 20, 70, 8)  # in the overlap, seen by both tiles
    right = _disc(shape, 44, 70, 8)
    a = _seen(left, a_tile, 1, 0.9)
    b = _seen(right, b_tile, 1, 0.8)
    c = _seen(left, b_tile, 2, 0.8)  # same pixels, other class
    assert not same_object(a, b) and not same_object(a, c)
    assert len(merge_detections([a, b, c])) == 3


def test_overlap_min_rule_merges_a_sliver() -> None:
    """A sliver (tile a sees 3 columns of the object) inside tile b's whole object:
    IoU in the shared region is low, overlap / min area is 1."""
    shape = (64, 128)
    a_tile, b_tile = (0, 0, 64, 80), (0, 40, 64, 104)
    obj = np.zeros(shape, bool)
    obj[20:40, 77:100] = True  # tile a sees columns 77..79
    a = _seen(obj, a_tile, 1, 0.6)
    b_mask = obj.copy()
    b_mask[20:40, 60:77] = True  # b's mask is wider in the shared region (x 40..80)
    b = _seen(b_mask, b_tile, 1, 0.9)
    assert not same_object(a, b, rule="iou", threshold=0.5)
    assert same_object(a, b, rule="overlap_min", threshold=0.5)
    assert len(merge_detections([a, b], rule="overlap_min")) == 1
    assert len(merge_detections([a, b], rule="iou")) == 2  # NMS: IoU 60/(800) is low


def test_nms_drops_duplicates_of_one_tile() -> None:
    shape = (64, 64)
    tile = (0, 0, 64, 64)
    d1 = _seen(_disc(shape, 30, 30, 10), tile, 1, 0.9)
    d2 = _seen(_disc(shape, 30, 31, 10), tile, 1, 0.8)  # IoU ~0.94
    d3 = _seen(_disc(shape, 30, 42, 10), tile, 1, 0.7)  # IoU ~0.3: another object
    kept = merge_detections([d2, d3, d1])
    assert [d.score for d in kept] == [0.9, 0.7]


def test_paint_highest_score_on_top_ids_by_score() -> None:
    shape = (32, 32)
    tile = (0, 0, 32, 32)
    low = np.zeros(shape, bool)
    low[0:10, 0:10] = True
    high = np.zeros(shape, bool)
    high[5:15, 5:15] = True
    hidden = np.zeros(shape, bool)
    hidden[6:9, 6:9] = True  # wholly under `high`
    dets = [_seen(low, tile, 1, 0.3), _seen(high, tile, 2, 0.9), _seen(hidden, tile, 1, 0.5)]
    inst, sem, rows = paint_instances(dets, shape)
    assert inst[7, 7] == 1 and sem[7, 7] == 2  # highest score on top, id 1
    assert inst[0, 0] == 2 and sem[0, 0] == 1
    assert [r["instance_id"] for r in rows] == [1, 2]  # the hidden one is gone
    assert rows[1]["area"] == 100 - 25 and (rows[1]["x1"], rows[1]["y2"]) == (0, 10)
    assert inst.dtype == np.uint32 and sem.dtype == np.uint8


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Mask R-CNN (ResNet-18-FPN, tile 64) saved as a model card."""
    import torch

    from dlpipe.models import build_maskrcnn

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("maskrcnn")
    arch = {
        "num_classes": 3,
        "backbone": "resnet18",
        "tile_size": TILE,
        "anchor_sizes": [8, 16, 32, 64, 128],
        "detections_per_image": 5,
    }
    torch.save(build_maskrcnn(**arch).state_dict(), out / "weights.pt")
    (out / "card.json").write_text(
        json.dumps(
            {
                "model": "maskrcnn",
                "architecture": arch,
                "input": "2d",
                "classes": CLASSES,
                "normalisation": {"p0_1": 0.0, "p99_9": 255.0},
            }
        )
    )
    return out


def _dataset(path: Path, images: np.ndarray) -> Path:
    g = zarr.open_group(str(path), mode="w")
    g.create_array("images", data=images)
    g.attrs["image_names"] = [f"img{i}.png" for i in range(len(images))]
    (path / ".dlpipe_complete").write_text("")
    return path


def _run(args: list[str], tmp_path: Path, tracking: bool = False) -> int:
    cfg = json.dumps({"results": str(tmp_path / "results"), "tracking": {"enabled": tracking}})
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "warning", "--config-json", cfg, *args])
    return exc.value.code


def test_tiled_predict_end_to_end(model_dir: Path, tmp_path: Path, capsys) -> None:
    """Real random-weight model on images twice the tile size: shapes, dtypes, table."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60, (2, 128, 60), dtype=np.uint8)  # 3 tiles each (y starts 0, 48, 64)
    for k in range(2):
        img[k][_disc((128, 60), 64, 30, 14)] = 220
    ds = _dataset(tmp_path / "ds.zarr", img)
    out = tmp_path / "pred.zarr"
    code = _run(
        [
            "predict",
            str(model_dir),
            str(ds),
            "--out",
            str(out),
            "--score-threshold",
            "0",
            "--device",
            "cpu",
        ],
        tmp_path,
        tracking=True,
    )
    assert code == 0, capsys.readouterr().err
    assert (out / ".dlpipe_complete").is_file()
    root = zarr.open_group(str(out), mode="r")
    inst, sem = np.asarray(root["instances"]), np.asarray(root["semantic"])
    assert inst.shape == sem.shape == (2, 128, 60)
    assert inst.dtype == np.uint32 and sem.dtype == np.uint8
    meta = root.attrs["dlpipe"]
    assert meta["classes"] == CLASSES and meta["image_names"] == ["img0.png", "img1.png"]
    import csv

    import pyarrow.parquet as pq

    with open(out / "instances.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    parquet = pq.read_table(out / "instances.parquet").to_pylist()
    assert len(table) == len(parquet) > 0
    assert list(table[0]) == list(parquet[0])
    for row, prow in zip(table, parquet, strict=True):
        assert int(row["instance_id"]) == prow["instance_id"]
        assert float(row["score"]) == pytest.approx(prow["score"])
    for i in range(2):
        rows = sorted((r for r in parquet if r["image"] == i), key=lambda r: r["instance_id"])
        assert {r["image_name"] for r in rows} <= {f"img{i}.png"}
        ids = np.unique(inst[i])[1:]
        assert [r["instance_id"] for r in rows] == ids.tolist() == list(range(1, len(ids) + 1))
        scores = [r["score"] for r in rows]
        assert scores == sorted(scores, reverse=True) and min(scores) >= 0
        for r in rows:
            m = inst[i] == r["instance_id"]
            assert m.sum() == r["area"]
            ys, xs = np.nonzero(m)
            assert (r["x1"], r["y1"], r["x2"], r["y2"]) == (
                xs.min(),
                ys.min(),
                xs.max() + 1,
                ys.max() + 1,
            )
            assert (sem[i][m] == r["class_id"]).all()
            assert CLASSES[r["class_id"]] == r["class_name"]
        assert ((sem[i] > 0) == (inst[i] > 0)).all()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dlpipe")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["stage"] == "predict" and run.info.status == "FINISHED"
    assert run.data.metrics["images"] == 2 and run.data.metrics["instances"] == len(table)
    # an existing output is refused without --overwrite
    code = _run(["predict", str(model_dir), str(ds), "--out", str(out)], tmp_path)
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_bad_inputs_exit_2(model_dir: Path, tmp_path: Path, capsys) -> None:
    five = _dataset(tmp_path / "five.zarr", np.zeros((1, 32, 32, 5), np.uint8))
    assert _run(["predict", str(model_dir), str(five), "--out", str(tmp_path / "o")], tmp_path) == 2
    assert "channels do not fit" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "weights.pt").write_bytes((model_dir / "weights.pt").read_bytes())
    card = json.loads((model_dir / "card.json").read_text())
    card["architecture"]["num_classes"] = 4
    (bad / "card.json").write_text(json.dumps(card))
    ok = _dataset(tmp_path / "ok.zarr", np.zeros((1, 32, 32), np.uint8))
    assert _run(["predict", str(bad), str(ok), "--out", str(tmp_path / "o")], tmp_path) == 2
    assert "num_classes" in capsys.readouterr().err
    card["architecture"]["num_classes"] = 3
    card["classes"] = CLASSES
    card["architecture"]["backbone"] = "mobilenet_v3_large"
    (bad / "card.json").write_text(json.dumps(card))
    assert _run(["predict", str(bad), str(ok), "--out", str(tmp_path / "o")], tmp_path) == 2
    err = capsys.readouterr().err
    assert "weights do not fit" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_volume_test_slices(model_dir: Path, tmp_path: Path, capsys) -> None:
    """A tiled volume: the test split's z-slices, each one padded tile (64 × 40)."""
    import pyarrow.parquet as pq
    from _predict_helpers import write_volume

    from dlpipe.prediction.instances import predict_instances

    rng = np.random.default_rng(2)
    vol = write_volume(tmp_path / "vol.zarr", rng.integers(0, 255, (6, 64, 40), dtype=np.uint8))
    root = zarr.open_group(str(vol), mode="r+")
    root.attrs["dlpipe"] = dict(root.attrs["dlpipe"]) | {
        "split": {"train": [0, 3], "val": [3, 4], "test": [4, 6], "gap": 0}
    }
    out = tmp_path / "pred.zarr"
    s = predict_instances(
        model_dir,
        vol,
        out,
        {"score_threshold": 0.0, "slices": "test"},
        device="cpu",
        progress=False,
    )
    assert s["images"] == 2 and s["tiles"] == 2
    pred = zarr.open_group(str(out), mode="r")
    assert pred["instances"].shape == (2, 64, 40)
    assert pred.attrs["dlpipe"]["z"] == [4, 5]
    table = pq.read_table(out / "instances.parquet").to_pydict()
    assert set(table["z"]) <= {4, 5} and len(table["z"]) == s["instances"]
    chan = write_volume(tmp_path / "c.zarr", np.zeros((2, 8, 8), np.uint8), axes=["c", "y", "x"])
    assert _run(["predict", str(model_dir), str(chan), "--out", str(tmp_path / "o")], tmp_path) == 2
    assert "channel" in capsys.readouterr().err


@pytest.mark.parametrize("rule", ["iou", "overlap_min"])
def test_oracle_tiles_on_real_nuclei_give_back_every_object(shared_data: Path, rule) -> None:
    """DSB2018 nuclei (one PNG per instance): each 64-px tile 'detects' exactly the part of
    every nucleus it sees (an oracle); merged and painted, every nucleus comes back whole
    and once (F1 = AP = 1), though many are cut by tile borders, and touching nuclei stay
    apart."""
    from skimage.io import imread

    from dlpipe.evaluation.instances import evaluate_instance_images

    folders = sorted((shared_data / "dsb2018" / "stage1_train").iterdir())
    folder = max(folders, key=lambda f: len(list((f / "masks").glob("*.png"))))
    masks = [imread(p) > 0 for p in sorted((folder / "masks").glob("*.png"))]
    shape = masks[0].shape[:2]
    truth = np.zeros(shape, np.uint32)
    for k, m in enumerate(masks, start=1):
        truth[m.reshape(shape)] = k
    ids = np.unique(truth)[1:]
    rng = np.random.default_rng(0)
    dets, cut = [], 0
    for tile in _tiles(shape):
        for k in ids:
            d = _seen(truth == k, tile, 1, float(rng.random()))
            if d is not None:
                dets.append(d)
                whole = d.area == int((truth == k).sum())
                cut += not whole
    assert cut > 20 and len(dets) > len(ids)  # many objects are cut by tile borders
    merged = merge_detections(dets, rule=rule)
    assert len(merged) == len(ids)
    inst, sem, _ = paint_instances(merged, shape)
    r = evaluate_instance_images(
        [(inst, sem, truth, (truth > 0).astype(np.uint8), None)], ["background", "nucleus"]
    )
    assert r["overall"]["f1"] == 1 and r["overall"]["ap"] == 1
    assert np.array_equal(inst > 0, truth > 0)


def test_padded_dataset_images_are_predicted_at_their_real_size(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    """``image_sizes`` (datasets of mixed sizes, zero-padded): nothing is detected in the
    padding, and a padded image gives exactly what the unpadded image alone gives."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 60, (70, 50), dtype=np.uint8)
    small[_disc((70, 50), 35, 25, 12)] = 220
    padded = np.zeros((2, 128, 90), dtype=np.uint8)
    padded[0] = rng.integers(0, 60, (128, 90), dtype=np.uint8)
    padded[1, :70, :50] = small
    ds = _dataset(tmp_path / "ds.zarr", padded)
    zarr.open_group(str(ds), mode="r+").attrs["image_sizes"] = [[128, 90], [70, 50]]
    alone = _dataset(tmp_path / "alone.zarr", small[None])
    args = ["--score-threshold", "0", "--device", "cpu"]
    for src, out in ((ds, "p.zarr"), (alone, "a.zarr")):
        code = _run(
            ["predict", str(model_dir), str(src), "--out", str(tmp_path / out), *args], tmp_path
        )
        assert code == 0, capsys.readouterr().err
    inst = np.asarray(zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["instances"])
    ref = np.asarray(zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["instances"])[0]
    assert ref.any(), "the random model detected nothing: the test would prove nothing"
    assert not inst[1, 70:].any() and not inst[1, :, 50:].any()
    np.testing.assert_array_equal(inst[1, :70, :50], ref)
    # a size that does not fit the array is refused
    zarr.open_group(str(ds), mode="r+").attrs["image_sizes"] = [[128, 90], [70, 91]]
    code = _run(
        ["predict", str(model_dir), str(ds), "--out", str(tmp_path / "x.zarr"), *args], tmp_path
    )
    assert code == 2 and "image_sizes" in capsys.readouterr().err


def test_grey_and_colour_both_predict_and_rescaling(model_dir: Path, tmp_path: Path) -> None:
    """The channel rule: a grey image with a colour-trained card and an RGBA image with a
    grey-trained card both predict; a card pixel_size rescales and maps back."""
    import shutil

    from dlpipe.prediction.instances import image_scale
    from dlpipe.prediction.maskrcnn import _measure_rows, load_maskrcnn, predict_image

    rgb_dir = tmp_path / "rgb"
    shutil.copytree(model_dir, rgb_dir)
    card = json.loads((rgb_dir / "card.json").read_text())
    (rgb_dir / "card.json").write_text(json.dumps(card | {"channels": 3, "pixel_size": 0.5}))
    grey = _dataset(tmp_path / "grey.zarr", np.full((1, 40, 50), 30, np.uint8))
    assert _run(["predict", str(rgb_dir), str(grey), "--out", str(tmp_path / "o1")], tmp_path) == 0
    rgba = _dataset(tmp_path / "rgba.zarr", np.full((1, 40, 50, 4), 30, np.uint8))
    assert (
        _run(["predict", str(model_dir), str(rgba), "--out", str(tmp_path / "o2")], tmp_path) == 0
    )
    assert zarr.open_group(str(tmp_path / "o2"), mode="r")["instances"].shape == (1, 40, 50)
    # pixel size: the input's over the card's
    card = json.loads((rgb_dir / "card.json").read_text())
    assert image_scale(card, {"pixel_size": None}, None) == 1.0
    assert image_scale(card, {"pixel_size": 1.5}, None) == 3.0
    assert image_scale(card, {"pixel_size": None}, 0.25) == 0.5
    model = load_maskrcnn(rgb_dir)
    img = np.random.default_rng(0).integers(0, 255, (30, 41), dtype=np.uint8)
    p = {"score_threshold": 0.0}
    inst, sem, _, tiles = predict_image(model, img, 0.0, 255.0, p, scale=2.0)
    assert inst.shape == sem.shape == (30, 41) and tiles == 2  # 60 x 82 at the model's scale
    assert predict_image(model, img, 0.0, 255.0, p)[3] == 1
    # rows are measured again at the image's size
    lab = np.zeros((6, 6), np.uint32)
    lab[1:3, 2:5] = 2
    got = _measure_rows(lab, [{"instance_id": 1}, {"instance_id": 2, "x1": 0}])
    assert got == [{"instance_id": 2, "x1": 2, "y1": 1, "x2": 5, "y2": 3, "area": 6}]
