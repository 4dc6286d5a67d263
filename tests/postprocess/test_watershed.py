"""Seeded watershed: targets by hand, seeds, thresholds, chunked = whole."""

from __future__ import annotations

import numpy as np
import pytest

from dlpipe.errors import UserError
from dlpipe.postprocess.watershed import (
    check_thresholds,
    grid_search,
    seeded_watershed,
    seeds,
    watershed_chunked,
)
from dlpipe.training.instance_targets import boundary_map, distance_map


def test_boundary_by_hand() -> None:
    inst = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 2, 2],
            [0, 1, 1, 1, 2, 2],
            [0, 1, 1, 1, 2, 2],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    want = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 1, 1],
            [0, 1, 0, 1, 1, 0],
            [0, 1, 1, 1, 1, 1],
            [0, 0, 0, 0, 0, 0],
        ],
        bool,
    )
    # object 2 touches the array's right border: that border is not a boundary by itself
    np.testing.assert_array_equal(boundary_map(inst), want)


def test_distance_by_hand() -> None:
    inst = np.zeros((7, 7), int)
    inst[1:6, 1:6] = 1  # a 5x5 square: distances to the outside 1, 2, 3 from rim to centre
    inst[0, 6] = 2  # a one-pixel object in the corner: distance 1 -> 1.0
    d = distance_map(inst)
    assert d[3, 3] == pytest.approx(1.0)
    assert d[1, 1] == pytest.approx(1 / 3)
    assert d[2, 3] == pytest.approx(2 / 3)
    assert d[1, 3] == pytest.approx(1 / 3)
    assert d[0, 6] == pytest.approx(1.0)
    assert d[0, 0] == 0 and d.dtype == np.float32
    # each object's values lie in (0, 1], with 1 reached
    for k in (1, 2):
        v = d[inst == k]
        assert v.min() > 0 and v.max() == pytest.approx(1.0)


def test_distance_3d_and_touching_objects() -> None:
    inst = np.zeros((5, 5, 8), int)
    inst[1:4, 1:4, 1:4] = 1
    inst[1:4, 1:4, 4:7] = 2  # touching object: its face is a boundary for both
    d = distance_map(inst)
    assert d[2, 2, 2] == pytest.approx(1.0) and d[2, 2, 5] == pytest.approx(1.0)
    assert d[2, 2, 3] == pytest.approx(0.5)  # next to object 2: distance 1 of max 2
    b = boundary_map(inst)
    assert b[2, 2, 3] and b[2, 2, 4] and not b[2, 2, 2]


def test_seeds_and_watershed_split_touching_discs() -> None:
    yy, xx = np.indices((40, 60))
    inst = np.zeros((40, 60), int)
    inst[(yy - 20) ** 2 + (xx - 18) ** 2 < 12**2] = 1
    inst[((yy - 20) ** 2 + (xx - 40) ** 2 < 12**2) & (inst == 0)] = 2
    dist = distance_map(inst)
    fg = (inst > 0).astype(np.float32)
    s = seeds(dist, fg > 0.5, 0.5)
    assert s.max() == 2  # one seed per disc
    assert s[20, 18] != s[20, 40]
    lab = seeded_watershed(fg, dist, seed_threshold=0.5, foreground_threshold=0.5)
    assert lab.max() == 2
    # seeds below the contact: one object (too low a seed threshold merges them)
    assert seeded_watershed(fg, dist, seed_threshold=0.05).max() == 1
    # a small foreground blob without a seed still becomes an object; min_size drops it
    fg[2:4, 55:57] = 1
    assert seeded_watershed(fg, dist, seed_threshold=0.5).max() == 3
    assert seeded_watershed(fg, dist, seed_threshold=0.5, min_size=5).max() == 2


def test_thresholds_out_of_range_are_one_line() -> None:
    check_thresholds({"seed_threshold": 0.3, "foreground_threshold": 0.5, "min_size": 0}, "x")
    for bad in ({"seed_threshold": 1.0}, {"foreground_threshold": -0.1}, {"min_size": -1}):
        with pytest.raises(UserError, match="x\\."):
            check_thresholds(bad, "x")


def _balls(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.indices(shape)
    inst = np.zeros(shape, np.uint32)
    for k in range(1, n + 1):
        c = rng.uniform(0, shape)
        r = rng.uniform(3, 7)
        m = sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True)) < r * r
        inst[m & (inst == 0)] = k
    return inst


def _matched(a: np.ndarray, b: np.ndarray, iou: float) -> int:
    from dlpipe.evaluation.instances import pair_iou

    _, _, m = pair_iou(a, b)
    return int((m >= iou).any(1).sum()) if m.size else 0


@pytest.mark.parametrize("shape,block", [((48, 80, 80), (16, 32, 32)), ((150, 170), (40, 64))])
def test_chunked_matches_whole(shape: tuple[int, ...], block: tuple[int, ...]) -> None:
    """>= 99 % of the whole-array objects are matched at IoU 0.9 by the chunked result."""
    inst = _balls(shape, 90 if len(shape) == 3 else 60, seed=1)
    dist = distance_map(inst)
    fg = (inst > 0).astype(np.float32)
    kw = {"seed_threshold": 0.4, "foreground_threshold": 0.5, "min_size": 3}
    whole = seeded_watershed(fg, dist, **kw)
    out = np.zeros(shape, np.uint32)
    res = watershed_chunked(fg, dist, out, block=block, halo=(12,) * len(shape), **kw)
    n = int(whole.max())
    assert n > 30 and res.count == int(out.max())
    assert res.merged > 0  # objects cut by block faces were joined
    assert _matched(whole, out, 0.9) >= 0.99 * n
    assert _matched(out, whole, 0.9) >= 0.99 * res.count
    np.testing.assert_array_equal(res.sizes[1:], np.bincount(out.ravel())[1:])


def test_chunked_touching_objects_are_not_joined() -> None:
    """Two objects meeting exactly at a block face stay two."""
    inst = np.zeros((20, 40), np.uint32)
    inst[4:16, 8:20] = 1
    inst[4:16, 20:32] = 2
    dist = distance_map(inst)
    out = np.zeros(inst.shape, np.uint32)
    res = watershed_chunked(
        (inst > 0).astype(np.float32), dist, out, block=(20, 20), halo=(4, 4), seed_threshold=0.5
    )
    assert res.count == 2 and set(np.unique(out[4:16, 8:20])) == {1}


def test_grid_search_picks_the_best() -> None:
    inst = _balls((80, 80), 25, seed=3)
    dist, fg = distance_map(inst), (inst > 0).astype(np.float32)
    best, table = grid_search([(fg, dist, inst)], [0.05, 0.5], [0.5])
    assert len(table) == 2 and best["seed_threshold"] == 0.5
    assert best["f1"] >= max(r["f1"] for r in table)


def test_tuned_thresholds_need_enough_validation_objects() -> None:
    from dlpipe.postprocess.watershed import choose_thresholds

    table = [
        {"seed_threshold": st, "foreground_threshold": ft, "f1": f1, "n_true": 40}
        for st, ft, f1 in ((0.5, 0.5, 0.6), (0.7, 0.6, 0.8))
    ]
    best = {"seed_threshold": 0.7, "foreground_threshold": 0.6, "f1": 0.8}
    config = {"seed_threshold": 0.5, "foreground_threshold": 0.5}
    few = choose_thresholds(best, table, config, 50)
    assert not few["tuned"] and (few["seed_threshold"], few["foreground_threshold"]) == (0.5, 0.5)
    assert few["val_objects"] == 40 and few["val_f1"] == 0.6
    assert "40 validation objects" in few["note"]
    assert few["best"] == best
    enough = choose_thresholds(best, table, config, 40)
    assert enough["tuned"]
    assert (enough["seed_threshold"], enough["foreground_threshold"]) == (0.7, 0.6)
    assert enough["val_f1"] == 0.8 and "note" not in enough

    # enough objects, but a gain under tune_min_gain is noise: the configured ones stay
    small = choose_thresholds(best | {"f1": 0.62}, table, config, 40, 0.05)
    assert (
        not small["tuned"] and small["seed_threshold"] == 0.5 and "tune_min_gain" in small["note"]
    )
    assert small["configured_val_f1"] == 0.6
    assert choose_thresholds(best, table, config, 40, 0.05)["tuned"]
