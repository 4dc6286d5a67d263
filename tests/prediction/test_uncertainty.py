"""Per-slice uncertainty of a prediction: block sums gathered = the whole volume's means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.prediction import predict_volume
from dlpipe.prediction.output import (
    gather_uncertainty,
    slice_uncertainty,
    write_block_uncertainty,
)
from dlpipe.prediction.windows import block_bounds, block_grid


def test_measure_by_hand() -> None:
    p = np.array([0.6, 0.3, 0.1], np.float32).reshape(3, 1, 1, 1)
    z, y, x = slice_uncertainty(p)
    assert z[0] == y[0] == x[0] == pytest.approx(0.7)  # 1 - (0.6 - 0.3)
    p = np.array([0.2, 0.5, 0.3], np.float32).reshape(3, 1, 1, 1)
    assert slice_uncertainty(p)[0][0] == pytest.approx(0.8)  # 1 - (0.5 - 0.3)


def test_chunked_sums_gather_to_the_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shape, block = (10, 12, 14), (4, 5, 6)
    p = rng.random((3, *shape)).astype(np.float32)
    p /= p.sum(axis=0)
    for index in block_grid(shape, block):
        bounds = block_bounds(index, shape, block)
        sel = (slice(None), *(slice(a, b) for a, b in bounds))
        write_block_uncertainty(tmp_path, index, bounds, slice_uncertainty(p[sel]))
    got = gather_uncertainty(tmp_path, shape, block)
    s = np.sort(p, axis=0)
    u = 1 - (s[-1] - s[-2])
    assert got["measure"] == "1 - margin"
    np.testing.assert_allclose(got["z"], u.mean(axis=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(got["y"], u.mean(axis=(0, 2)), atol=1e-6)
    np.testing.assert_allclose(got["x"], u.mean(axis=(0, 1)), atol=1e-6)
    (tmp_path / ".dlpipe_uncertainty" / "0_0_0.npz").unlink()
    assert gather_uncertainty(tmp_path, shape, block) is None  # a block without sums


def test_predict_records_per_slice_uncertainty(models, volume: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.zarr"
    params = {"block": [4, 32, 32], "probabilities": True, "threads": 2}
    predict_volume(models["2d"], volume, out, params, progress=False)
    meta = dict(zarr.open_group(str(out), mode="r").attrs)["dlpipe"]
    unc = meta["uncertainty"]
    assert [len(unc[a]) for a in "zyx"] == [12, 72, 80]
    prob = np.asarray(zarr.open_group(str(out), mode="r")["probabilities/0"], np.float32)
    s = np.sort(prob, axis=0)
    u = 1 - (s[-1] - s[-2])  # from the stored float16 probabilities
    np.testing.assert_allclose(unc["z"], u.mean(axis=(1, 2)), atol=2e-3)
    np.testing.assert_allclose(unc["x"], u.mean(axis=(0, 1)), atol=2e-3)
    assert 0 <= min(unc["y"]) and max(unc["y"]) <= 1
