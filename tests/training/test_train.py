"""The training loop: outputs, exact resume, early stopping, NaN stop, bad input via the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import zarr

from dlpipe.cli import main
from dlpipe.models import build_unet, count_parameters
from dlpipe.training import NaNLossError, sparse_labels, train

NO_TRACKING = ["--config-json", '{"tracking": {"enabled": false}}']


def test_outputs_and_card(tiny_store, tmp_path, make_volume, tiny_params):
    store = tiny_store()
    params = tiny_params(input="2.5d", context_slices=3)
    card = train(store, tmp_path / "m", params, progress=False)
    out = tmp_path / "m"
    for name in (
        "weights.pt",
        "card.json",
        "metrics.csv",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "plots/loss.png",
        "plots/jaccard.png",
        "plots/val_overlay.png",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "card.json").read_text())
    assert saved == card
    assert card["model"] == "unet" and card["input"] == "2.5d" and card["context_slices"] == 3
    assert card["classes"] == ["matrix", "fibre", "pore"] and card["ignore_index"] == 255
    assert card["architecture"]["in_channels"] == 3 and card["architecture"]["dim"] == 2
    assert card["patch_size"] == [8, 8] and card["rare_classes"] == ["pore"]
    net = build_unet(card["architecture"])
    net.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    assert count_parameters(net) == card["parameters"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "val_jaccard_pore", "val_mean_jaccard", "lr"} <= set(rows[0])
    mean = np.nanmean(
        [float(rows[card["best_epoch"] - 1][f"val_jaccard_{c}"]) for c in card["classes"]]
    )
    assert card["val_mean_jaccard"] == pytest.approx(mean)


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_resume_is_bit_identical(tiny_store, tmp_path, mode, make_volume, tiny_params):
    store = tiny_store()
    extra = {"patch_size": [4, 8, 8]} if mode == "3d" else {}
    params = tiny_params(
        input=mode,
        epochs=3,
        schedule="step",
        step_size=1,
        architecture={"dropout": 0.3, "input_noise": 0.05},
        **extra,
    )
    train(store, tmp_path / "straight", params, progress=False)
    train(store, tmp_path / "split", dict(params, epochs=1), progress=False)
    train(store, tmp_path / "split", params, resume=True, progress=False)
    for name in ("weights.pt", "checkpoints/last.pt"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "split" / name, weights_only=True)
        a, b = a.get("model", a), b.get("model", b)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows_a = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    rows_b = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    strip = [lambda r: r.rsplit(",", 1)[0]]  # the last column is wall time
    assert [strip[0](r) for r in rows_a] == [strip[0](r) for r in rows_b]


def test_resume_refuses_changed_settings(tiny_store, tmp_path, make_volume, tiny_params):
    store = tiny_store()
    train(store, tmp_path / "m", tiny_params(epochs=1), progress=False)
    with pytest.raises(Exception, match="different settings \\(lr\\)"):
        train(store, tmp_path / "m", tiny_params(lr=0.5), resume=True, progress=False)


def test_early_stopping_and_sparse_validation(tiny_store, tmp_path, make_volume, tiny_params):
    card = train(
        tiny_store(),
        tmp_path / "m",
        tiny_params(epochs=5, patience=1, min_delta=1.0),
        progress=False,
    )
    assert card["epochs_run"] == 2 and card["best_epoch"] == 1
    assert card["stop_reason"].startswith("early stopping")
    # labels only on slices 1 and 4 (training slab): no validation voxel -> train loss monitor
    img, lab = make_volume()
    store = tiny_store(image=img, labels=sparse_labels(lab, [1, 4]), name="sparse.zarr")
    card = train(store, tmp_path / "s", tiny_params(epochs=1), progress=False)
    assert card["monitor"] == "train_loss" and card["val_mean_jaccard"] is None


def test_nan_loss_keeps_last_good_checkpoint(tiny_store, tmp_path, capsys, tiny_params):
    store = tiny_store()
    out = tmp_path / "m"
    train(store, out, tiny_params(epochs=1), progress=False)
    before = (out / "checkpoints" / "last.pt").read_bytes()
    arr = zarr.open_array(str(store / "0"), mode="r+")
    arr[...] = np.nan
    with pytest.raises(NaNLossError, match="training loss is nan at epoch 2, step 1"):
        train(store, out, tiny_params(epochs=2), resume=True, progress=False)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    with pytest.raises(SystemExit) as exc:
        main(
            [
                *NO_TRACKING,
                "train",
                str(store),
                "--out",
                str(out),
                "--resume",
                "--set",
                "epochs=2",
                "--set",
                "steps_per_epoch=2",
                "--set",
                "batch_size=2",
                "--set",
                "patch_size=[8,8]",
                "--set",
                "workers=0",
                "--set",
                "device=cpu",
                "--set",
                "val_max_patches=4",
                "--set",
                "architecture.depth=2",
                "--set",
                "architecture.base_filters=2",
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("dlpipe: error: ") and "last good checkpoint" in last


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*NO_TRACKING, "train", *args])
    return exc.value.code, capsys.readouterr().err


def test_bad_inputs_exit_2(tiny_store, tmp_path, capsys, make_volume, tiny_params):
    out = str(tmp_path / "m")
    small = ["--set", "patch_size=[8,8]", "--set", "architecture.depth=2"]
    _, lab = make_volume()
    empty = tiny_store(labels=np.full_like(lab, 255), name="empty.zarr")
    code, err = _cli([str(empty), "--out", out, *small], capsys)
    assert code == 2 and "empty training set" in err
    split = {"train": [0, 0], "val": [0, 5], "test": [5, 10], "gap": 0}
    code, err = _cli(
        [str(tiny_store(split=split, name="nosplit.zarr")), "--out", out, *small], capsys
    )
    assert code == 2 and "empty training set" in err
    bad = lab.copy()
    bad[3, 5, 6] = 9
    code, err = _cli([str(tiny_store(labels=bad, name="bad.zarr")), "--out", out, *small], capsys)
    assert code == 2 and "mask value 9 at (z=3, y=5, x=6) is outside the 3 classes" in err
    good = str(tiny_store())
    code, err = _cli([good, "--out", out, "--set", "patch_size=[32,32]"], capsys)
    assert code == 2 and "larger than the volume" in err
    code, err = _cli(
        [
            good,
            "--out",
            out,
            "--input",
            "3d",
            "--set",
            "patch_size=[8,8,8]",
            "--set",
            "architecture.depth=2",
        ],
        capsys,
    )
    assert code == 2 and "larger than the training slab" in err
    code, err = _cli([good, "--out", out, "--bogus"], capsys)
    assert code == 2 and "No such option: --bogus" in err
    code, err = _cli([good, "--out", out, "--set", "bogus=1"], capsys)
    assert code == 2 and "unknown key 'train.bogus'" in err
    code, err = _cli([good, "--out", out, "--input", "4d"], capsys)
    assert code == 2 and "train.input" in err
    code, err = _cli([str(tmp_path / "missing.zarr"), "--out", out], capsys)
    assert code == 2 and "training data not found" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_with_mixed_precision(tiny_store, tmp_path, make_volume, tiny_params):
    card = train(tiny_store(), tmp_path / "m", tiny_params(device="auto", epochs=1), progress=False)
    assert card["device"].startswith("cuda")
    weights = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in weights.values())


@pytest.mark.parametrize("colour", [False, True])
def test_trains_on_a_cvat_dataset_zarr(tmp_path, make_volume, tiny_params, colour):
    """Grey or RGB images (the channel rule: a U-Net reads colour as its luminance)."""
    img, lab = make_volume(shape=(5, 16, 16))
    group = zarr.open_group(str(tmp_path / "cvat.zarr"), mode="w")
    img = img.astype(np.uint8)
    if colour:
        img = np.repeat(img[..., None], 3, axis=-1)
    group.create_array("images", data=img, chunks=(1, 16, 16, 3) if colour else (1, 16, 16))
    group.create_array("semantic", data=lab, chunks=(1, 16, 16))
    group.create_array("instances", data=lab.astype(np.uint32), chunks=(1, 16, 16))
    group.attrs["classes"] = ["background", "fibre", "pore"]
    group.attrs["image_names"] = [f"slice_{i:04d}.png" for i in range(5)]
    card = train(tmp_path / "cvat.zarr", tmp_path / "m", tiny_params(epochs=1), progress=False)
    assert card["classes"] == ["background", "fibre", "pore"]
    assert card["split"] == {"train": [0, 4], "val": [4, 5]}
    assert card["monitor"] == "val_mean_jaccard"
    assert card["channels"] == 1 and "luminance" in card["channel_rule"]
