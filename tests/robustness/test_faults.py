"""Issue 17 faults: a full disk during tile and predict (RLIMIT_FSIZE in the child), and
an unreachable or bogus tracking server (item 8)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from _robust import file_size_limit, one_line, phantom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prediction"))
from _predict_helpers import train_model

LIMIT = 20_000  # bytes: the metadata fits, a chunk of image or probabilities does not


def test_full_disk_during_tile(tmp_path: Path, dlpipe) -> None:
    image, _ = phantom((24, 64, 64), seed=1)  # chunks of ~90 kB: past the limit
    np.save(tmp_path / "image.npy", image)
    proc = dlpipe("tile", "image.npy", "--out", "vol.zarr", preexec_fn=file_size_limit(LIMIT))
    assert proc.returncode == 2
    line = one_line(proc)
    assert "vol.zarr" in line and "cannot write" in line and "file too large" in line
    out = tmp_path / "vol.zarr"
    assert not (out / ".dlpipe_complete").exists()  # nothing complete under the final name
    proc = dlpipe("evaluate", "vol.zarr", "image.npy", "--out", "m.json")  # refused downstream
    assert proc.returncode == 2
    line = one_line(proc)
    assert "vol.zarr" in line and "incomplete store" in line
    # space again: the rerun needs no --overwrite
    proc = dlpipe("tile", "image.npy", "--out", "vol.zarr")
    assert proc.returncode == 0, proc.stderr
    assert (out / ".dlpipe_complete").is_file()


def test_full_disk_during_predict(tiled: Path, tmp_path: Path, dlpipe) -> None:
    model = train_model(tmp_path / "model", "2d", steps=2)
    args = ("predict", model, "vol.zarr", "--out", "pred.zarr", "--probabilities")
    proc = dlpipe(*args, preexec_fn=file_size_limit(LIMIT))
    assert proc.returncode == 2
    line = one_line(proc)
    assert "pred.zarr" in line and "cannot write" in line
    pred = tmp_path / "pred.zarr"
    assert not (pred / ".dlpipe_complete").exists()
    proc = dlpipe("evaluate", "pred.zarr", "vol.zarr", "--all", "--out", "m.json")
    assert proc.returncode == 2 and "incomplete store" in one_line(proc)
    assert not (tmp_path / "m.json").exists()
    proc = dlpipe(*args)
    assert proc.returncode == 0, proc.stderr
    assert (pred / ".dlpipe_complete").is_file()


def _labels(tmp_path: Path) -> None:
    import tifffile

    a = np.zeros((4, 16, 16), np.uint8)
    a[:, 4:8] = 1
    tifffile.imwrite(tmp_path / "A.tif", a, photometric="minisblack")


def test_unreachable_tracking_server_is_one_line_not_a_hang(tmp_path: Path, dlpipe) -> None:
    _labels(tmp_path)
    server = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}
    t0 = time.perf_counter()
    args = ("evaluate", "A.tif", "A.tif", "--all", "--out", "m.json")
    proc = dlpipe(*args, config=None, extra_env=server)
    assert time.perf_counter() - t0 < 60  # was 250 s
    assert proc.returncode == 2
    line = one_line(proc)
    assert "http://127.0.0.1:1" in line and "unreachable" in line and "tracking.required" in line
    assert not (tmp_path / "m.json").exists()
    # tracking.required: false: a warning, and the command runs untracked
    optional = json.dumps({"tracking": {"required": False}})
    proc = dlpipe(*args, config=optional, extra_env=server)
    assert proc.returncode == 0, proc.stderr
    assert "running untracked" in proc.stderr and (tmp_path / "m.json").is_file()


def test_bogus_tracking_uri_is_one_line(tmp_path: Path, dlpipe) -> None:
    _labels(tmp_path)
    proc = dlpipe(
        "evaluate", "A.tif", "A.tif", "--all", "--out", "m.json",
        config=None, extra_env={"MLFLOW_TRACKING_URI": "bogus://x"},
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_line(proc)
    assert "bogus://x" in line and "scheme 'bogus'" in line
    assert not (tmp_path / "m.json").exists()
