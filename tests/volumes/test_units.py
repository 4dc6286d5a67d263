"""Building blocks with hand-checked values: statistics, pyramid, split, natural sort."""

from __future__ import annotations

import numpy as np
import pytest

from dlpipe.errors import UserError
from dlpipe.volumes import (
    StreamingStats,
    downsample_mean,
    downsample_mode,
    level_shapes,
    natural_key,
    z_split,
)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_statistics_are_exact_over_slabs(dtype: str) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    vol = rng.integers(info.min, info.max, size=(9, 31, 17), endpoint=True).astype(dtype)
    st = StreamingStats(dtype)
    for z in range(0, 9, 4):  # uneven slabs
        st.update(vol[z : z + 4])
    r = st.result()
    x = vol.astype(np.float64)
    assert (r["min"], r["max"]) == (int(vol.min()), int(vol.max()))
    assert r["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert r["std"] == pytest.approx(x.std(), rel=1e-12)
    assert r["p0_1"] == pytest.approx(np.percentile(x, 0.1), abs=1e-9)
    assert r["p99_9"] == pytest.approx(np.percentile(x, 99.9), abs=1e-9)
    assert sum(r["histogram"]["counts"]) == vol.size


def test_integer_percentile_hand_checked() -> None:
    st = StreamingStats("uint8")
    st.update(np.array([[[0, 10, 10, 200]]], dtype=np.uint8))
    # numpy linear: position (4-1)*0.999 = 2.997 between sorted[2]=10 and sorted[3]=200
    assert st.percentile(99.9) == pytest.approx(10 + 190 * 0.997)
    assert st.percentile(0.1) == pytest.approx(0.0 + 10 * 0.003)
    assert st.result()["mean"] == 55.0


def test_float_statistics_with_growing_range() -> None:
    rng = np.random.default_rng(2)
    # each slab widens the range, forcing bin merges both ways
    slabs = [rng.normal(0, s, size=(2, 40, 40)).astype(np.float32) + s for s in (1, 10, 300)]
    vol = np.concatenate(slabs)
    st = StreamingStats("float32")
    for s in slabs:
        st.update(s)
    r = st.result()
    x = vol.astype(np.float64)
    assert r["min"] == float(vol.min()) and r["max"] == float(vol.max())
    assert r["mean"] == pytest.approx(x.mean(), rel=1e-9)
    assert r["std"] == pytest.approx(x.std(), rel=1e-9)
    assert not r["exact_percentiles"]
    assert abs(r["p0_1"] - np.percentile(x, 0.1)) <= 2 * st.width
    assert abs(r["p99_9"] - np.percentile(x, 99.9)) <= 2 * st.width
    assert st.width < (vol.max() - vol.min()) / 8000
    assert int(st.counts.sum()) == vol.size


def test_statistics_state_round_trip(tmp_path) -> None:
    st = StreamingStats("int16")
    st.update(np.arange(-50, 50, dtype=np.int16).reshape(1, 10, 10))
    st.save(tmp_path / "s.npz", extra=np.array([3]))
    back, extra = StreamingStats.load(tmp_path / "s.npz", "int16")
    assert back.result() == st.result() and int(extra["extra"][0]) == 3


def test_downsample_mean_odd_sizes() -> None:
    a = np.arange(3 * 2 * 3, dtype=np.uint8).reshape(3, 2, 3)
    d = downsample_mean(a)
    assert d.shape == (2, 1, 2) and d.dtype == np.uint8
    # block z0-1, y0-1, x0-1: values 0,1,3,4,6,7,9,10 -> mean 5
    assert d[0, 0, 0] == 5
    # last x column alone (x=2): 2,5,8,11 -> 6.5 -> rounds half up -> 7
    assert d[0, 0, 1] == 7
    # last z slice alone (z=2): 12,13,15,16 -> 14
    assert d[1, 0, 0] == 14
    f = downsample_mean(a.astype(np.float32))
    assert f.dtype == np.float32 and f[0, 0, 1] == pytest.approx(6.5)


def test_downsample_mode_votes_and_ties() -> None:
    a = np.zeros((2, 2, 4), dtype=np.uint8)
    a[:, :, 0:2] = 2
    a[0, 0, 0] = 1
    a[:, :, 2:4] = [[[3, 1], [3, 1]], [[1, 3], [1, 3]]]  # 4 vs 4: tie -> smaller label
    d = downsample_mode(a)
    assert d.tolist() == [[[2, 1]]]


def test_downsample_mean_int16_negative() -> None:
    a = np.array([-3, -4, -4, -4, -4, -4, -4, -4], dtype=np.int16).reshape(2, 2, 2)
    assert downsample_mean(a).item() == -4  # -3.875 -> -4
    a[0, 0, 0] = -32768
    assert downsample_mean(a).item() == -4099  # -32796 / 8 = -4099.5, half up -> -4099


def test_level_shapes() -> None:
    assert level_shapes((150, 150, 150), 4) == [(150,) * 3, (75,) * 3, (38,) * 3, (19,) * 3]


def test_split_fractions_and_gap() -> None:
    assert z_split(100) == {"train": [0, 70], "val": [70, 80], "test": [80, 100], "gap": 0}
    # 100 - 2*5 = 90 usable: 63 / 9 / 18
    assert z_split(100, gap=5) == {"train": [0, 63], "val": [68, 77], "test": [82, 100], "gap": 5}
    assert z_split(10, fractions=[1, 0, 0]) == {
        "train": [0, 10],
        "val": [10, 10],
        "test": [10, 10],
        "gap": 0,
    }


def test_split_ranges_and_errors() -> None:
    r = z_split(50, gap=2, ranges={"train": [0, 30], "val": [32, 40], "test": [42, 50]})
    assert r["val"] == [32, 40]
    with pytest.raises(UserError, match="closer than gap"):
        z_split(50, gap=3, ranges={"train": [0, 30], "val": [32, 40], "test": [42, 50]})
    with pytest.raises(UserError, match="too thin"):
        z_split(4, gap=2)


def test_natural_sort() -> None:
    names = ["s10.png", "s2.png", "S1.png", "s100.png"]
    assert sorted(names, key=natural_key) == ["S1.png", "s2.png", "s10.png", "s100.png"]
