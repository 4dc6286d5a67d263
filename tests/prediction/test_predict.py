"""Block-wise prediction: seams, modes, outputs, resume after a kill, bad input via the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from _predict_helpers import phantom, write_volume

from dlpipe.cli import main
from dlpipe.prediction import load_model, predict, predict_region, predict_volume
from dlpipe.stores.ngff import label_image_attrs

NO_TRACKING = ["--config-json", '{"tracking": {"enabled": false}}']
# Bit-identical results need the same torch thread count in every process (the order of
# floating-point sums depends on it): pinned for the runs compared byte for byte.
PINNED = ["--config-json", '{"tracking": {"enabled": false}, "predict": {"torch_threads": 1}}']


def _labels(out: Path) -> np.ndarray:
    return zarr.open_group(out, mode="r")["labels/phases/0"][:]


def _one_pass_probs(model_dir: Path, image: np.ndarray, pad: tuple[int, int, int]) -> np.ndarray:
    """Probabilities (C, z, y, x) of ONE forward pass over the whole volume reflect-padded
    by ``pad`` per axis (the halo mirrored past the border, and the 2.5D slices mirrored at
    the first and last slice, as the tiled run does), cropped back to the volume."""
    m = load_model(model_dir)
    card = m.card["normalisation"]
    x = (image.astype(np.float32) - card["p0_1"]) / (card["p99_9"] - card["p0_1"])
    xp = np.pad(x, [(p, p) for p in pad], mode="reflect")
    window = xp.shape if m.mode == "3d" else xp.shape[1:]
    probs, n = predict_region(m.net, xp, m.mode, window, context=m.context)
    assert n == (1 if m.mode == "3d" else xp.shape[0] - 2 * (m.context // 2))
    crop = tuple(slice(p, p + s) for p, s in zip(pad, image.shape, strict=True))
    if m.mode != "3d":
        crop = (slice(pad[0] - m.context // 2, pad[0] - m.context // 2 + image.shape[0]), *crop[1:])
    return probs[(slice(None), *crop)]


def _one_pass(model_dir: Path, image: np.ndarray, pad: tuple[int, int, int]) -> np.ndarray:
    """Argmax of :func:`_one_pass_probs`."""
    return np.argmax(_one_pass_probs(model_dir, image, pad), axis=0)


@pytest.mark.parametrize(
    ("mode", "shape", "block", "window"),
    [
        ("2d", (3, 96, 96), (1, 32, 32), [64, 64]),
        ("2.5d", (4, 64, 96), (2, 32, 32), [64, 64]),
        ("3d", (32, 48, 48), (16, 16, 16), [32, 32, 32]),
    ],
)
def test_tiled_matches_one_pass_without_seams(models, tmp_path, mode, shape, block, window) -> None:
    """Windows twice the training patch (a fully convolutional net takes them), the default
    halo (window * overlap / 2 = window / 8, mirrored past the volume border); the one-pass
    reference is one forward pass over the whole volume reflect-padded by that halo."""
    image, _ = phantom(shape, seed=3)
    vol = write_volume(tmp_path / "v.zarr", image)
    out = tmp_path / "p.zarr"
    s = predict_volume(
        models[mode], vol, out, {"block": list(block), "window": window}, progress=False
    )
    nblocks = np.prod([-(-a // b) for a, b in zip(shape, block, strict=True)])
    assert s["complete"] and s["blocks"] == nblocks
    h = [w // 8 for w in window]  # the default halo: window * overlap / 2
    pad = (h[0], h[1], h[2]) if mode == "3d" else (1 if mode == "2.5d" else 0, h[0], h[1])
    tiled = _labels(out)
    ref = _one_pass(models[mode], image, pad)
    counts = np.bincount(ref.ravel(), minlength=3)
    assert (counts > 0.05 * ref.size).sum() >= 2, f"degenerate reference argmax {counts}"
    diff = tiled != ref
    assert diff.mean() <= 0.001, f"{diff.sum()} of {diff.size} voxels differ"
    # voxels on an inner block face (first/last plane of a block, y and x; z in 3D)
    face = np.zeros(shape, dtype=bool)
    for ax in range(0 if mode == "3d" else 1, 3):
        idx = [slice(None)] * 3
        for b in range(block[ax], shape[ax], block[ax]):
            idx[ax] = slice(b - 1, b + 1)
            face[tuple(idx)] = True
    assert diff[face].mean() <= max(diff[~face].mean(), 0.001)


def test_output_carries_the_volumes_voxel_size_and_unit_like_its_labels(
    models, volume, tmp_path
) -> None:
    """PRED.zarr's labels get the NGFF metadata of VOL.zarr's: the input's voxel size and
    unit, ``source``, the one palette and the class names as ``properties``."""
    root = zarr.open_group(volume, mode="r+")
    attrs = root.attrs.asdict()
    ms = attrs["ome"]["multiscales"][0]
    ms["axes"] = [a | {"unit": "micrometer"} for a in ms["axes"]]
    ms["datasets"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [2.0, 0.5, 0.5]}]
    root.attrs.update(attrs)
    out = tmp_path / "p.zarr"
    predict_volume(
        models["2d"], volume, out, {"block": [12, 72, 80], "probabilities": True}, progress=False
    )
    pred = zarr.open_group(out, mode="r")
    assert pred["labels"].attrs["ome"]["labels"] == ["phases"]
    want = label_image_attrs(
        "phases",
        1,
        [2.0, 0.5, 0.5],
        "micrometer",
        "0.5",
        classes=["matrix", "fibre", "pore"],
        title="p",  # napari's layer "phases: p", shown
        visible=True,
    )
    assert pred["labels/phases"].attrs.asdict() == want
    label = want["ome"]["image-label"]
    assert label["source"] == {"image": "../../"} and label["properties"][1]["name"] == "fibre"
    prob = pred["probabilities"].attrs["ome"]["multiscales"][0]
    assert [a.get("unit") for a in prob["axes"]] == [None, *["micrometer"] * 3]
    assert prob["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 0.5, 0.5]


def test_predict_reads_the_card_once_and_opens_the_volume_once(
    models, volume, tmp_path, monkeypatch
) -> None:
    """``predict`` dispatches on the card it read itself; a local U-Net run opens the
    volume once; a card naming no known family is refused."""
    import dlpipe.prediction.maskrcnn
    import dlpipe.prediction.model
    import dlpipe.prediction.run
    from dlpipe import stores
    from dlpipe.errors import UserError

    reads, opens = [], []
    real_read, real_open = dlpipe.prediction.run.read_card, stores.open_volume

    def no_second_read(model_dir):
        raise AssertionError("the card was read a second time")

    monkeypatch.setattr(dlpipe.prediction.model, "read_card", no_second_read)
    monkeypatch.setattr(dlpipe.prediction.maskrcnn, "read_card", no_second_read)

    def read(model_dir):
        reads.append(model_dir)
        return real_read(model_dir)

    def open_volume(*args, **kwargs):
        opens.append(args)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(dlpipe.prediction.run, "read_card", read)
    monkeypatch.setattr(stores, "open_volume", open_volume)
    out = tmp_path / "p.zarr"
    s = predict(models["2d"], volume, out, {"block": [12, 72, 80], "threads": 2}, progress=False)
    assert s["complete"] and len(reads) == 1 and len(opens) == 1
    monkeypatch.undo()
    want = zarr.open_group(out, mode="r")["labels/phases/0"][:]
    q = tmp_path / "q.zarr"
    again = predict_volume(models["2d"], volume, q, {"block": [12, 72, 80]}, progress=False)
    assert again["complete"]
    assert np.array_equal(zarr.open_group(q, mode="r")["labels/phases/0"][:], want)
    odd = tmp_path / "odd"
    shutil.copytree(models["2d"], odd)
    card = json.loads((odd / "card.json").read_text())
    (odd / "card.json").write_text(json.dumps(card | {"model": "transformer"}))
    with pytest.raises(UserError, match="expected one of unet, maskrcnn"):
        predict(odd, volume, tmp_path / "r.zarr")


def test_outputs_probabilities_and_ome_metadata(models, volume, tmp_path) -> None:
    out = tmp_path / "p.zarr"
    s = predict_volume(
        models["2.5d"],
        volume,
        out,
        {"block": [4, 32, 32], "probabilities": True, "threads": 2},
        progress=False,
    )
    assert s["blocks"] == 3 * 3 * 3 and s["blocks_predicted"] == 27
    root = zarr.open_group(out, mode="r")
    lab = root["labels/phases/0"]
    prob = root["probabilities/0"]
    assert lab.dtype == np.uint8 and lab.shape == (12, 72, 80) and lab.chunks == (4, 32, 32)
    assert prob.dtype == np.float16 and prob.shape == (3, 12, 72, 80)
    assert prob.chunks == (3, 4, 32, 32)
    p = prob[:].astype(np.float32)
    assert np.allclose(p.sum(axis=0), 1.0, atol=4e-3)
    assert (
        np.array_equal(np.argmax(p, axis=0) == lab[:], np.ones(lab.shape, bool))
        or (np.argmax(p, axis=0) != lab[:]).mean() < 1e-3
    )  # float16 ties only
    assert root["labels"].attrs["ome"]["labels"] == ["phases"]
    props = root["labels/phases"].attrs["ome"]["image-label"]["properties"]
    assert [q["name"] for q in props] == ["matrix", "fibre", "pore"]
    assert root.attrs["dlpipe"]["complete"] is True and (out / ".dlpipe_complete").is_file()
    assert len(list((out / ".dlpipe_blocks").iterdir())) == 27


@pytest.mark.parametrize(
    ("mode", "shape", "halo", "window"),
    [("2d", (2, 40, 48), (0, 12, 8), [64, 64]), ("3d", (12, 20, 24), (6, 6, 4), [24, 32, 32])],
)
def test_border_blocks_see_a_mirrored_halo(models, tmp_path, mode, shape, halo, window) -> None:
    """One block covering the volume, halo mirrored on every side, region = one window:
    the probabilities are those of one pass over the reflect-padded volume, and differ
    at the border from one pass over the volume without padding."""
    image, _ = phantom(shape, seed=11)
    vol = write_volume(tmp_path / "v.zarr", image)
    out = tmp_path / "p.zarr"
    params = {"block": list(shape), "halo": list(halo), "window": window, "probabilities": True}
    s = predict_volume(models[mode], vol, out, params, progress=False)
    assert s["windows"] == (1 if mode == "3d" else shape[0])  # one window per slice / volume
    tiled = zarr.open_group(out, mode="r")["probabilities/0"][:].astype(np.float32)
    mirrored = _one_pass_probs(models[mode], image, halo)
    assert np.abs(tiled - mirrored).max() < 2e-3  # float16 storage
    assert np.array_equal(_labels(out), np.argmax(mirrored, axis=0))
    # without the mirrored halo the border voxels come out differently
    m = load_model(models[mode])
    x = (image.astype(np.float32) - m.card["normalisation"]["p0_1"]) / (
        m.card["normalisation"]["p99_9"] - m.card["normalisation"]["p0_1"]
    )
    plain, _ = predict_region(m.net, x, m.mode, x.shape if mode == "3d" else x.shape[1:])
    edge = np.zeros(shape, dtype=bool)
    edge[..., :2, :] = edge[..., -2:, :] = edge[..., :2] = edge[..., -2:] = True
    assert np.abs(plain - mirrored)[:, edge].max() > 20 * np.abs(tiled - mirrored).max()
    assert np.abs(tiled - plain)[:, edge].mean() > 20 * np.abs(tiled - mirrored)[:, edge].mean()


def test_halo_reads_real_neighbours_not_padding(models, tmp_path) -> None:
    """A block's prediction depends on the voxels of its neighbour inside the halo."""
    image, _ = phantom((1, 64, 64), seed=5)
    a = write_volume(tmp_path / "a.zarr", image)
    changed = image.copy()
    changed[:, :, 36:40] = 255 - changed[:, :, 36:40]  # inside block 1's halo of block 0
    b = write_volume(tmp_path / "b.zarr", changed)
    params = {"block": [1, 64, 32], "halo": [0, 8, 8]}
    la = (
        predict_volume(models["2d"], a, tmp_path / "pa.zarr", params, progress=False),
        _labels(tmp_path / "pa.zarr"),
    )[1]
    predict_volume(models["2d"], b, tmp_path / "pb.zarr", params, progress=False)
    lb = _labels(tmp_path / "pb.zarr")
    assert not np.array_equal(la[:, :, 24:32], lb[:, :, 24:32])
    # beyond the halo + receptive field nothing moves: x < 36 - 8 - receptive field
    assert np.array_equal(la[:, :, :8], lb[:, :, :8])


def _cli(args: list[str], capsys, config: list[str] = NO_TRACKING) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([*config, "predict", *args])
    cap = capsys.readouterr()
    return exc.value.code, cap.err + cap.out


def test_resume_after_kill_is_bit_identical(models, volume, tmp_path, cli_env) -> None:
    """A fresh CLI process killed part-way and resumed by another gives the bytes of an
    uninterrupted fresh run (each run in its own process, as a user runs them)."""
    ref = tmp_path / "ref.zarr"
    out = tmp_path / "out.zarr"
    args = [str(models["2d"]), str(volume), "--block", "2", "24", "24", "--probabilities"]
    env = cli_env | {
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parents[2] / "src"), cli_env.get("PYTHONPATH", "")]
        )
    }
    cmd = [sys.executable, "-m", "dlpipe", *PINNED, "predict", *args]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cmd, *extra], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    done = run("--out", str(ref))
    assert done.returncode == 0, done.stderr
    total = len(list((ref / ".dlpipe_blocks").iterdir()))
    assert total == 6 * 3 * 4
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t0 = time.time()
    markers = out / ".dlpipe_blocks"
    while time.time() - t0 < 120:
        if markers.is_dir() and len(list(markers.iterdir())) >= 8:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(markers.iterdir()))
    assert 8 <= done_before < total, "kill came too late to test resume"
    assert not (out / ".dlpipe_complete").exists()
    # the rerun resumes the killed run's output, with or without --resume (issue 17)
    resumed = run("--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    text = resumed.stdout + resumed.stderr
    assert f"predicted {total - done_before} of {total} blocks ({done_before} done before)" in text
    a, b = zarr.open_group(ref, mode="r"), zarr.open_group(out, mode="r")
    for name in ("labels/phases/0", "probabilities/0"):
        assert a[name][:].tobytes() == b[name][:].tobytes(), name
    assert (out / ".dlpipe_complete").is_file()


def test_resume_refuses_other_model_or_layout(models, volume, tmp_path, capsys) -> None:
    out = tmp_path / "p.zarr"
    predict_volume(models["2d"], volume, out, {"block": [4, 32, 32]}, progress=False)
    code, err = _cli(
        [
            str(models["2.5d"]),
            str(volume),
            "--out",
            str(out),
            "--resume",
            "--block",
            "4",
            "32",
            "32",
        ],
        capsys,
    )
    assert code == 2 and "refusing to resume" in err and "another model" in err
    code, err = _cli(
        [str(models["2d"]), str(volume), "--out", str(out), "--resume", "--block", "4", "16", "16"],
        capsys,
    )
    assert code == 2 and "another block layout" in err
    # the same model and layout: nothing left to do
    s = predict_volume(
        models["2d"], volume, out, {"block": [4, 32, 32]}, resume=True, progress=False
    )
    assert s["blocks_predicted"] == 0 and s["blocks_done_before"] == 27
    code, err = _cli([str(models["2d"]), str(volume), "--out", str(out)], capsys)
    assert code == 2 and "output exists" in err


def test_bad_input_through_cli(models, tmp_path, capsys) -> None:
    image, _ = phantom((3, 32, 32), seed=1)
    m2 = models["2d"]
    # channels: a volume with a channel axis
    v = write_volume(tmp_path / "c.zarr", image, axes=["c", "y", "x"])
    code, err = _cli([str(m2), str(v), "--out", str(tmp_path / "o1.zarr")], capsys)
    assert code == 2 and "channels do not fit" in err and "3 channels" in err
    # channels: a card whose network takes 2 channels for a 2d input
    bad = tmp_path / "badmodel"
    shutil.copytree(m2, bad)
    card = json.loads((bad / "card.json").read_text())
    card["architecture"]["in_channels"] = 2
    (bad / "card.json").write_text(json.dumps(card))
    v = write_volume(tmp_path / "v.zarr", image)
    code, err = _cli([str(bad), str(v), "--out", str(tmp_path / "o2.zarr")], capsys)
    assert code == 2 and "channels do not fit" in err and "2 input channels" in err
    # a 2D model on a 3D input without a z axis to slice along
    t = write_volume(tmp_path / "t.zarr", image, axes=["t", "y", "x"])
    code, err = _cli([str(m2), str(t), "--out", str(tmp_path / "o3.zarr")], capsys)
    assert code == 2 and "needs a z axis to slice along" in err
    # missing statistics: neither in the card nor in the volume
    nostat = tmp_path / "nostat"
    shutil.copytree(m2, nostat)
    card = json.loads((nostat / "card.json").read_text())
    del card["normalisation"]
    (nostat / "card.json").write_text(json.dumps(card))
    ns = write_volume(tmp_path / "ns.zarr", image, stats=False)
    code, err = _cli([str(nostat), str(ns), "--out", str(tmp_path / "o4.zarr")], capsys)
    assert code == 2 and "missing statistics" in err
    # ...but the volume's statistics are used when the card has none
    assert predict_volume(nostat, v, tmp_path / "o5.zarr", {"block": [3, 32, 32]}, progress=False)[
        "complete"
    ]
    # not a model folder; a 3D model on a 2D image
    code, err = _cli([str(tmp_path), str(v), "--out", str(tmp_path / "o6.zarr")], capsys)
    assert code == 2 and "no card.json" in err
    flat = write_volume(tmp_path / "flat.zarr", image[0])
    code, err = _cli([str(models["3d"]), str(flat), "--out", str(tmp_path / "o7.zarr")], capsys)
    assert code == 2 and "3D model cannot predict a 2D image" in err
    # output exists
    (tmp_path / "exists.zarr").mkdir()
    (tmp_path / "exists.zarr" / "keep.txt").write_text("a user's file")
    code, err = _cli([str(m2), str(v), "--out", str(tmp_path / "exists.zarr")], capsys)
    assert code == 2 and "output exists (use --overwrite" in err
    code, _ = _cli(
        [
            str(m2),
            str(v),
            "--out",
            str(tmp_path / "exists.zarr"),
            "--overwrite",
            "--block",
            "3",
            "32",
            "32",
        ],
        capsys,
    )
    assert code == 0


def test_corrupt_chunk_is_named_and_output_left_incomplete(models, tmp_path, capsys) -> None:
    image, _ = phantom((8, 64, 64), seed=2)
    v = write_volume(tmp_path / "v.zarr", image, chunks=(8, 32, 32))
    chunk = v / "0" / "c" / "0" / "1" / "1"
    assert chunk.is_file()
    chunk.write_bytes(b"\x00garbage" * 10)
    out = tmp_path / "o.zarr"
    code, err = _cli(
        [str(models["2d"]), str(v), "--out", str(out), "--block", "8", "32", "32"], capsys
    )
    assert code == 2 and "corrupt input chunk 0/c/0/1/1" in err
    assert not (out / ".dlpipe_complete").exists()
    assert zarr.open_group(out, mode="r").attrs["dlpipe"]["complete"] is False


def test_slab_jobs_then_gather_equal_one_run(models, volume, tmp_path, capsys) -> None:
    ref, out = tmp_path / "ref.zarr", tmp_path / "slabs.zarr"
    common = [str(models["2d"]), str(volume), "--block", "4", "32", "32"]
    assert _cli([*common, "--out", str(ref)], capsys)[0] == 0
    code, err = _cli([*common, "--out", str(out), "--slab", "0", "2"], capsys)
    assert code == 2 and "--prepare" in err
    assert _cli([*common, "--out", str(out), "--prepare"], capsys)[0] == 0
    for i in range(2):
        assert _cli([*common, "--out", str(out), "--slab", str(i), "2"], capsys)[0] == 0
        assert not (out / ".dlpipe_complete").exists()
    assert _cli(["--gather", *common, "--out", str(out)], capsys)[0] == 0
    assert (out / ".dlpipe_complete").is_file()
    assert np.array_equal(_labels(ref), _labels(out))


def test_tta_runs_all_eight_dihedral_elements(models, volume, tmp_path) -> None:
    """Square sliding windows of the card's patch: all 8 elements (a whole 72 x 80 slice
    as one window would only take the 4 flips)."""
    patch = {"block": [12, 72, 80], "window": "patch"}
    plain = predict_volume(models["2d"], volume, tmp_path / "a.zarr", patch, progress=False)
    tta = predict_volume(
        models["2d"],
        volume,
        tmp_path / "b.zarr",
        patch | {"tta": 8, "probabilities": True},
        progress=False,
    )
    assert tta["windows"] == plain["windows"]  # same windows, 8 passes each
    assert tta["tta_elements"] == 8 and plain["tta_elements"] == 1
    assert tta["forward_passes"] == 8 * plain["forward_passes"] > 0
    a, b = _labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr")
    assert not np.array_equal(a, b) and (a == b).mean() > 0.8
    p = zarr.open_group(tmp_path / "b.zarr", mode="r")["probabilities/0"][:].astype(np.float32)
    assert np.allclose(p.sum(axis=0), 1.0, atol=4e-3)


def test_tta_3d_runs_48_elements_through_predict_volume(models, tmp_path) -> None:
    image, _ = phantom((16, 16, 16), seed=4)
    vol = write_volume(tmp_path / "v.zarr", image)
    common = {"block": [16, 16, 16], "batch_size": 4, "window": "patch"}
    plain = predict_volume(models["3d"], vol, tmp_path / "a.zarr", common, progress=False)
    tta = predict_volume(
        models["3d"], vol, tmp_path / "b.zarr", common | {"tta": 48}, progress=False
    )
    # region 16 + 2 * 2 (default halo 16 * 0.25 / 2) = 20 per axis: starts 0 and 4, so
    # 2 x 2 x 2 windows of 16³ in 2 batches of 4
    assert plain["windows"] == tta["windows"] == 8 and plain["forward_passes"] == 2
    assert tta["tta_elements"] == 48 and tta["forward_passes"] == 48 * 2
    a, b = _labels(tmp_path / "a.zarr"), _labels(tmp_path / "b.zarr")
    assert (a == b).mean() > 0.7
