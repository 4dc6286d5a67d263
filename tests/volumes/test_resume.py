"""A run killed part-way resumes without rewriting finished chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlpipe.errors import UserError
from dlpipe.stores import open_volume

NO_TRACKING = '{"tracking": {"enabled": false}}'


def _chunk_mtimes(level0: Path, z_chunks: range) -> dict[str, int]:
    return {
        str(p.relative_to(level0)): p.stat().st_mtime_ns
        for zc in z_chunks
        for p in (level0 / "c" / str(zc)).rglob("*")
        if p.is_file()
    }


def test_killed_run_resumes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 4000, size=(192, 384, 384), dtype=np.uint16)  # 54 MiB
    np.save(tmp_path / "v.npy", vol)
    out = tmp_path / "v.zarr"
    cmd = [
        sys.executable,
        "-m",
        "dlpipe",
        "--config-json",
        NO_TRACKING,
        "tile",
        str(tmp_path / "v.npy"),
        "--out",
        str(out),
        "--chunks",
        "4",
        "64",
        "64",
        "--levels",
        "3",
        "--memory-budget-mb",
        "64",
    ]
    env = cli_env | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = out / ".dlpipe_progress" / "slab_00002.done"
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / ".dlpipe_complete").exists()
    with pytest.raises(UserError, match="incomplete"):
        open_volume(out)
    done = sorted(p.name for p in (out / ".dlpipe_progress").glob("slab_*.done"))
    n_done = len(done)
    assert 3 <= n_done < 48  # 192 slices in slabs of 4
    before = _chunk_mtimes(out / "0", range(n_done))
    assert before

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {out}: {n_done} of 48 slabs already written" in rerun.stderr
    assert _chunk_mtimes(out / "0", range(n_done)) == before  # finished chunks untouched
    opened = open_volume(out)
    image, _, attrs = opened.image, opened.labels, opened.attrs
    np.testing.assert_array_equal(image[:], vol)
    x = vol.astype(np.float64)
    st = attrs["statistics"]
    assert st["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert st["std"] == pytest.approx(x.std(), rel=1e-12)
    assert st["p99_9"] == pytest.approx(np.percentile(x, 99.9))
    assert not (out / ".dlpipe_progress").exists()


def test_partial_store_with_other_settings_is_replaced(tmp_path: Path, run_tile) -> None:
    np.save(tmp_path / "v.npy", np.ones((8, 8, 8), np.uint8))
    out = tmp_path / "v.zarr"
    assert run_tile(tmp_path / "v.npy", "--out", out, "--levels", "1")[0] == 0
    (out / ".dlpipe_complete").unlink()  # looks like a killed run ...
    (out / ".dlpipe_progress").mkdir()
    (out / ".dlpipe_progress" / "settings.json").write_text("{}")  # ... of another input
    code, err = run_tile(tmp_path / "v.npy", "--out", out, "--levels", "1")
    assert code == 0, err  # a failed run's leftover: the rerun starts again (issue 17)
    assert (out / ".dlpipe_complete").is_file() and not (out / ".dlpipe_progress").exists()
