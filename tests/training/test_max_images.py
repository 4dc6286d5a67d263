"""train.max_images (fewer annotated training slices) and ``dlpipe train --resume-or-start``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from dlpipe.training import open_source, scan_labels, train
from dlpipe.training.resume import can_resume, resume_or_start
from dlpipe.training.stores import KeptSlices, evenly_spaced


def test_evenly_spaced() -> None:
    assert evenly_spaced(range(8), 3) == [0, 4, 7]  # linspace 0, 3.5, 7 rounded half up
    assert evenly_spaced([3, 9, 1, 5], 2) == [1, 9]
    assert evenly_spaced([2, 4, 6], 1) == [4]
    assert evenly_spaced([2, 4, 6], 5) == [2, 4, 6]
    for n in range(2, 30):  # nested: a learning curve adds slices, it never swaps them
        for k in range(2, n):
            assert set(evenly_spaced(range(n), k)) <= set(evenly_spaced(range(n), k + 1))


def _cvat(tmp_path: Path, make_volume, n: int = 10) -> Path:
    img, lab = make_volume(shape=(n, 16, 16))
    group = zarr.open_group(str(tmp_path / "cvat.zarr"), mode="w")
    group.create_array("images", data=img.astype(np.uint8), chunks=(1, 16, 16))
    group.create_array("semantic", data=lab, chunks=(1, 16, 16))
    group.attrs["classes"] = ["background", "fibre", "pore"]
    return tmp_path / "cvat.zarr"


def test_max_images_keeps_evenly_spaced_training_images(tmp_path, make_volume) -> None:
    store = _cvat(tmp_path, make_volume)  # 10 images: 8 train, 2 validation
    src = open_source(store, val_fraction=0.2, max_images=3)
    assert src.train == (0, 8) and src.val == (8, 10)
    assert src.extra["keep"] == [0, 4, 7] and src.extra["annotated"] == 8
    _, labels = src.open()
    assert isinstance(labels, KeptSlices)
    full = zarr.open_group(str(store), mode="r")["semantic"][:]
    block = labels[0:10]
    for z in range(10):  # dropped training slices read 255; kept and validation unchanged
        expect = full[z] if z in (0, 4, 7, 8, 9) else np.full_like(full[z], 255)
        assert np.array_equal(block[z], expect), z
        assert np.array_equal(labels[z], expect)
        assert np.array_equal(labels[z, 2:6, 3:9], expect[2:6, 3:9])
    index = scan_labels(labels, 3)
    assert list(index.labelled_slices((0, 8))) == [0, 4, 7]
    assert index.class_counts((0, 8)).sum() == 3 * 16 * 16


def test_max_images_on_a_sparse_volume(tiny_store, make_volume) -> None:
    _, lab = make_volume()
    sparse = np.full_like(lab, 255)
    sparse[[1, 2, 4, 5]] = lab[[1, 2, 4, 5]]  # 4 annotated slices in the train range 0-6
    src = open_source(tiny_store(labels=sparse), max_images=2)
    assert src.extra["keep"] == [1, 5] and src.extra["annotated"] == 4


def test_too_many_images_exits_2(tmp_path, make_volume, capsys) -> None:
    from dlpipe.cli import main

    store = _cvat(tmp_path, make_volume)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--log-level",
                "warning",
                "train",
                str(store),
                "--out",
                str(tmp_path / "m"),
                "--set",
                "max_images=9",
                "--set",
                'device="cpu"',
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "train.max_images is 9 but the training range z [0, 8] has only 8 annotated" in err


def test_training_uses_only_the_kept_images(tmp_path, make_volume, tiny_params) -> None:
    store = _cvat(tmp_path, make_volume)
    card = train(store, tmp_path / "m", tiny_params(epochs=1, max_images=2), progress=False)
    assert card["params"]["max_images"] == 2
    # Class counts of 2 of the 8 training images (16 x 16 pixels each).
    assert sum(card["train_class_counts"]) == 2 * 16 * 16


def _checkpoint(folder: Path, params: dict) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"params": json.dumps(params, sort_keys=True)}, folder / "checkpoints/last.pt")


def test_resume_or_start(tmp_path, tiny_params) -> None:
    params = tiny_params()
    assert not can_resume(tmp_path / "none", params)
    _checkpoint(tmp_path / "m", params)
    assert can_resume(tmp_path / "m", params)
    assert can_resume(tmp_path / "m", dict(params, epochs=9, workers=2))  # may change
    assert not can_resume(tmp_path / "m", dict(params, lr=0.5))
    assert not can_resume(tmp_path / "m", dict(params, max_images=3))
    assert resume_or_start(tmp_path / "m", params) is True
    # Starting again: a folder of empty folders (made by Snakemake) is cleared; a real one
    # is left for train(overwrite=True).
    (tmp_path / "e" / "plots").mkdir(parents=True)
    assert resume_or_start(tmp_path / "e", params) is False and not (tmp_path / "e").exists()
    assert resume_or_start(tmp_path / "m", dict(params, lr=0.5)) is False
    assert (tmp_path / "m" / "checkpoints" / "last.pt").is_file()
    (tmp_path / "bad" / "checkpoints").mkdir(parents=True)
    (tmp_path / "bad" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert not can_resume(tmp_path / "bad", params)


def test_cli_resume_or_start(tiny_store, tmp_path, capsys, tiny_params) -> None:
    """Killed after epoch 1 of 2 (simulated by a 1-epoch run), --resume-or-start resumes;
    with other settings it starts again."""
    from dlpipe.cli import main

    store, out = tiny_store(), tmp_path / "m"
    train(store, out, tiny_params(epochs=1), progress=False)
    (out / "card.json").unlink()  # as Snakemake leaves a killed job's folder

    def run(*extra: str) -> str:
        args = [
            "--log-level",
            "info",
            "--config-json",
            json.dumps({"train": tiny_params(epochs=2), "tracking": {"enabled": False}}),
            "train",
            str(store),
            "--out",
            str(out),
            "--resume-or-start",
            *extra,
        ]
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 0
        return capsys.readouterr().err

    assert "resuming after epoch 1" in run()
    assert json.loads((out / "card.json").read_text())["epochs_run"] == 2
    log = run("--set", "lr=0.01")
    assert "starting again" in log and "resuming" not in log
