"""Mask R-CNN training: targets, augmentation, the shared loop (loss, resume), pretrained files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from dlpipe.annotations import targets_from_arrays
from dlpipe.cli import main
from dlpipe.models import build_maskrcnn, maskrcnn_from_card
from dlpipe.training import (
    Augment,
    CropDataset,
    CropSpec,
    drop_cut_objects,
    grid_crops,
    load_pretrained,
    open_instances,
    random_crops,
    train,
)

NO_TRACKING = ["--config-json", '{"tracking": {"enabled": false}}']
TERMS = ["loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"]


def _bbox(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def test_targets_tight_boxes_labels_and_empty_image(instance_store):
    src = open_instances(instance_store(n=3, empty=(1,)), val_fraction=0)
    assert src.classes == ["background", "disc", "square"] and src.train == [0, 1, 2]
    ds = CropDataset(src, grid_crops(src, [0, 1], 64), 64, None, 16)
    img, t = ds[0]
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert t["labels"].tolist() == [1, 1, 1, 1, 2]  # four discs, then the square
    for box, mask in zip(t["boxes"].numpy(), t["masks"].numpy(), strict=True):
        assert box.tolist() == _bbox(mask)
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, 64, 64)
    # hand-checked: one pixel at (row 2, col 5) and a 2x3 block at rows 4-5, cols 0-2
    inst = np.zeros((8, 8), np.uint32)
    inst[2, 5] = 1
    inst[4:6, 0:3] = 2
    t = targets_from_arrays((inst > 0).astype(np.uint8) * np.uint8(3), inst)
    assert t["boxes"].tolist() == [[5, 2, 6, 3], [0, 4, 3, 6]]
    assert t["labels"].tolist() == [3, 3]


def test_drop_cut_objects():
    crop = np.zeros((6, 6), np.uint32)
    crop[0, 0:3] = 1  # 3 of its 50 pixels: cut, dropped
    crop[2, 0:3] = 2  # whole (3 of 3): kept although small
    crop[3:6, 0:6] = 3  # 18 of 50: kept (>= 16)
    full = np.array([0, 50, 3, 50])
    out = drop_cut_objects(crop, full, 16)
    assert sorted(np.unique(out).tolist()) == [0, 2, 3]
    assert (out[0] == 0).all() and (out[3:] == 3).all()


def test_augmented_crops_keep_masks_on_objects_and_boxes_tight(instance_store):
    src = open_instances(instance_store(n=4, size=96), val_fraction=0)
    aug = Augment(dihedral=True, shift=0.05, noise=0.02, contrast=0.1, gamma=1.2)
    specs = random_crops(src, 24, 64, np.random.default_rng(1), object_crops=0.7)
    assert {s.image for s in specs} <= set(src.train)
    ds = CropDataset(src, specs, 64, aug, 16)
    moved = 0
    for i, spec in enumerate(specs):
        img, t = ds[i]
        masks = t["masks"].numpy().astype(bool)
        assert len(t["boxes"]) == len(t["labels"]) == len(masks)
        for box, mask in zip(t["boxes"].numpy(), masks, strict=True):
            assert box.tolist() == _bbox(mask)
        inside = masks.any(0)
        if inside.any() and (~inside).any():  # the objects are bright: masks moved with them
            sel = torch.from_numpy(inside)
            assert img[0][sel].mean() > img[0][~sel].mean() + 0.3
        _, plain = CropDataset(src, [spec], 64, None, 16)[0]
        moved += not torch.equal(plain["masks"], t["masks"])
        # a dihedral element permutes pixels: the object areas are those of the plain crop
        assert sorted(t["masks"].sum((1, 2)).tolist()) == sorted(
            plain["masks"].sum((1, 2)).tolist()
        )
    assert moved > len(specs) // 2  # most crops were really rotated or flipped


def test_short_run_loss_decreases_and_writes_the_card(instance_store, tmp_path, mrcnn_params):
    store = instance_store(n=6)
    params = mrcnn_params(epochs=3, steps_per_epoch=2, schedule="constant", val_max_patches=1)
    card = train(store, tmp_path / "m", params, progress=False)
    out = tmp_path / "m"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for term in TERMS:
        assert f"train_{term}" in rows[0] and f"val_{term}" in rows[0]
    for row in rows:  # mask AP50 / F1@0.5 of the validation tile (instance metrics)
        assert 0 <= float(row["val_ap50"]) <= 1 and 0 <= float(row["val_f1"]) <= 1
    total = [float(r["train_loss"]) for r in rows]
    print("train_loss per epoch", total)
    assert total[-1] < 0.7 * total[0], total
    parts = sum(float(rows[0][f"train_{t}"]) for t in TERMS)
    assert parts == pytest.approx(total[0], rel=1e-5)
    assert json.loads((out / "card.json").read_text()) == card
    assert card["model"] == "maskrcnn" and card["input"] == "2d"
    assert card["classes"] == ["background", "disc", "square"]
    assert card["architecture"]["num_classes"] == 3 and card["architecture"]["tile_size"] == 64
    assert card["split"] == {
        "train": ["img0.png", "img1.png", "img2.png", "img3.png"],
        "val": ["img4.png", "img5.png"],
    }
    assert card["monitor"] == "val_ap50" and card["val_f1"] is not None
    assert card["val_loss"] == pytest.approx(float(rows[card["best_epoch"] - 1]["val_loss"]))
    for name in ("plots/loss_terms.png", "plots/val_overlay.png", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    model = maskrcnn_from_card(card)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))


def test_resume_after_a_stop_is_identical(instance_store, tmp_path, mrcnn_params, capsys):
    store = instance_store(n=4)
    # the step schedule does not depend on `epochs` (cosine's T_max does)
    params = mrcnn_params(
        epochs=2, steps_per_epoch=1, val_fraction=0.25, schedule="step", step_size=1
    )
    train(store, tmp_path / "straight", params, progress=False)
    train(store, tmp_path / "split", dict(params, epochs=1), progress=False)
    args = [
        "--set",
        "steps_per_epoch=1",
        "--set",
        "batch_size=2",
        "--set",
        "workers=0",
        "--set",
        "val_fraction=0.25",
        "--set",
        "val_max_patches=2",
        "--set",
        f"lr={params['lr']}",
        "--set",
        "torch_threads=1",
        "--set",
        "schedule=step",
        "--set",
        "step_size=1",
    ]
    for key, value in params["maskrcnn"].items():
        args += ["--set", f"maskrcnn.{key}={json.dumps(value)}"]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *NO_TRACKING,
                "train",
                "--model",
                "maskrcnn",
                str(store),
                "--out",
                str(tmp_path / "split"),
                "--resume",
                "--epochs",
                "2",
                "--device",
                "cpu",
                *args,
            ]
        )
    assert exc.value.code == 0, capsys.readouterr().err
    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [r.rsplit(",", 1)[0] for r in (tmp_path / "straight" / "metrics.csv").open()]
    assert strip == [r.rsplit(",", 1)[0] for r in (tmp_path / "split" / "metrics.csv").open()]


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*NO_TRACKING, "train", "--model", "maskrcnn", *map(str, args)])
    return exc.value.code, capsys.readouterr().err


def test_pretrained_missing_or_mismatching_exit_2(instance_store, tmp_path, capsys):
    store = instance_store(n=3)
    base = [
        store,
        "--out",
        tmp_path / "m",
        "--set",
        "maskrcnn.tile_size=64",
        "--set",
        "steps_per_epoch=1",
        "--device",
        "cpu",
    ]
    code, err = _cli([*base, "--set", f"maskrcnn.pretrained={tmp_path / 'none.pt'}"], capsys)
    assert code == 2 and "pretrained weights file not found" in err and "none.pt" in err
    other = tmp_path / "mobilenet.pt"
    torch.save(build_maskrcnn(3, backbone="mobilenet_v3_large").state_dict(), other)
    code, err = _cli([*base, "--set", f"maskrcnn.pretrained={other}"], capsys)
    assert code == 2 and "first mismatching key 'backbone.body.conv1.weight'" in err
    assert "missing from the file" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    code, err = _cli([*base, "--set", f"maskrcnn.pretrained={garbage}"], capsys)
    assert code == 2 and "cannot read pretrained weights" in err
    code, err = _cli([*base, "--set", "maskrcnn.backbone=vgg"], capsys)
    assert code == 2 and "maskrcnn.backbone" in err


def test_pretrained_fits_other_classes_and_backbone_only(tmp_path):
    import torchvision

    torch.manual_seed(1)
    donor = build_maskrcnn(5, tile_size=64)  # trained on 4 classes: predictors differ
    torch.save(donor.state_dict(), tmp_path / "donor.pt")
    model = build_maskrcnn(2, tile_size=64)
    loaded = load_pretrained(model, tmp_path / "donor.pt")
    own, ref = model.state_dict(), donor.state_dict()
    assert torch.equal(
        own["backbone.body.layer1.0.conv1.weight"], ref["backbone.body.layer1.0.conv1.weight"]
    )
    assert torch.equal(
        own["roi_heads.mask_predictor.conv5_mask.weight"],
        ref["roi_heads.mask_predictor.conv5_mask.weight"],
    )
    assert own["roi_heads.box_predictor.cls_score.weight"].shape[0] == 2
    assert loaded == len(own) - 6  # cls_score, bbox_pred, mask_fcn_logits: weight + bias
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pt")
    model = build_maskrcnn(2, tile_size=64)
    n = load_pretrained(model, tmp_path / "resnet18.pt", "backbone")
    assert torch.equal(
        model.state_dict()["backbone.body.conv1.weight"], resnet.state_dict()["conv1.weight"]
    )
    assert n == sum(1 for k in model.state_dict() if k.startswith("backbone.body."))


def test_bad_dataset_exit_2(tiny_store, instance_store, tmp_path, capsys):
    code, err = _cli([tiny_store(), "--out", tmp_path / "m"], capsys)
    assert code == 2 and "not an instance dataset: no images, semantic, instances" in err
    empty = instance_store(n=2, empty=(0, 1), name="empty.zarr")
    code, err = _cli([empty, "--out", tmp_path / "m"], capsys)
    assert code == 2 and "empty training set: no object in the training images" in err
    code, err = _cli([instance_store(n=2), "--out", tmp_path / "m", "--input", "3d"], capsys)
    assert code == 2 and "Mask R-CNN trains on 2d images" in err


def test_crops_pad_small_images_and_stay_in_the_image(tmp_path):
    from dlpipe.annotations import write_instance_dataset

    a = np.full((40, 50), 200, np.uint8)
    inst = np.zeros((40, 50), np.uint32)
    inst[10:20, 10:20] = 1
    b = np.full((80, 30), 100, np.uint8)
    frames = [
        ("a", a, (inst > 0).astype(np.uint8), inst),
        ("b", b, np.zeros((80, 30), np.uint8), np.zeros((80, 30), np.uint32)),
    ]
    write_instance_dataset(
        tmp_path / "d.zarr",
        frames,
        classes=["background", "x"],
        sizes=[(40, 50), (80, 30)],
        channels=1,
    )
    src = open_instances(tmp_path / "d.zarr", val_fraction=0)
    assert src.sizes == [(40, 50), (80, 30)]
    assert grid_crops(src, [0, 1], 64) == [
        CropSpec(0, 0, 0, 0),
        CropSpec(1, 0, 0, 0),
        CropSpec(1, 16, 0, 0),
    ]
    for spec in random_crops(src, 50, 64, np.random.default_rng(0)):
        h, w = src.sizes[spec.image]
        assert 0 <= spec.y0 <= max(h - 64, 0) and 0 <= spec.x0 <= max(w - 64, 0)
    img, _, inst_crop = CropDataset(src, [], 64, None, 16).read(CropSpec(0, 0, 0, 0))
    assert img.shape == (1, 64, 64)
    assert (img[0, 40:] == 0).all() and (img[0, :, 50:] == 0).all()  # padding
    assert inst_crop[10:20, 10:20].all() and inst_crop.sum() == 100
