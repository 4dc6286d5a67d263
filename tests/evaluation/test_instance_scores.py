"""Panoptic quality, count error and the size distance by hand (docs/instances.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlpipe.evaluation.instance_scores import (
    count_error,
    equivalent_diameters,
    panoptic_counts,
    panoptic_quality,
    size_distance,
)
from dlpipe.evaluation.instances import InstanceEvaluator


def _case() -> tuple[np.ndarray, np.ndarray]:
    true = np.zeros((4, 6), np.uint32)
    true[0:2, 0:2] = 1  # 4 px
    true[2:4, 4:6] = 2  # 4 px
    true[3, 0:2] = 3  # 2 px
    pred = np.zeros((4, 6), np.uint32)
    pred[0:2, 0:3] = 7  # 6 px: IoU 4/6 with true 1
    pred[2:4, 4] = 9  # 2 px: IoU exactly 0.5 with true 2: no PQ match (strictly above 0.5)
    return pred, true


def test_pq_count_error_and_w1_by_hand() -> None:
    pred, true = _case()
    ev = InstanceEvaluator(["background", "pore"])
    ev.add_image(pred, true, {1: 1, 2: 1, 3: 1}, {7: 1, 9: 1})
    m = ev.result()["per_class"]["pore"]
    # TP 1 (IoU 2/3), FP 1, FN 2: SQ 2/3, RQ 1 / (1 + 0.5 + 1) = 0.4, PQ 4/15
    assert m["sq"] == pytest.approx(2 / 3)
    assert m["rq"] == pytest.approx(0.4)
    assert m["pq"] == pytest.approx(4 / 15)
    # COCO matching at IoU >= 0.5 takes the 0.5 pair: F1 = 2*2 / (2 + 3)
    assert m["f1"] == pytest.approx(0.8)
    assert m["count_error_signed"] == pytest.approx(-1 / 3)
    assert m["count_error"] == pytest.approx(1 / 3)

    def d(a: float) -> float:
        return 2 * math.sqrt(a / math.pi)

    # pred diameters {d2, d6} (1/2 each), true {d2, d4, d4} (1/3 each): the area between
    # the CDFs is (1/2 - 1/3)(d4 - d2) + (1 - 1/2)(d6 - d4)
    w1 = (d(4) - d(2)) / 6 + (d(6) - d(4)) / 2
    assert m["size_w1"] == pytest.approx(w1)
    o = ev.result()["overall"]
    assert o["pq"] == pytest.approx(4 / 15) and o["size_w1"] == pytest.approx(w1)


def test_pq_edge_cases() -> None:
    assert panoptic_quality(0, 0, 0, 0.0)["pq"] != panoptic_quality(0, 0, 0, 0.0)["pq"]  # NaN
    q = panoptic_quality(0, 2, 1, 0.0)
    assert q["pq"] == 0.0 and q["rq"] == 0.0 and math.isnan(q["sq"])
    assert panoptic_quality(2, 0, 0, 1.8) == {"pq": pytest.approx(0.9), "sq": 0.9, "rq": 1.0}
    tp, s = panoptic_counts(np.array([[0.9, 0.6], [0.8, 0.7]]))
    assert (tp, s) == (2, pytest.approx(1.6))  # greedy by IoU, each row/column once
    assert panoptic_counts(np.zeros((0, 3))) == (0, 0.0)


def test_count_error_and_diameters() -> None:
    assert count_error(12, 10) == {"count_error": 0.2, "count_error_signed": 0.2}
    assert count_error(8, 10)["count_error_signed"] == pytest.approx(-0.2)
    assert math.isnan(count_error(3, 0)["count_error"])
    r = 3.0
    v = 4 / 3 * math.pi * r**3
    assert equivalent_diameters([v], 3)[0] == pytest.approx(2 * r)
    # voxels of 0.5 x 0.5 x 0.5 um: 8 voxels are 1 um^3
    unit_cube = (6 / math.pi) ** (1 / 3)
    assert equivalent_diameters([8], 3, (0.5, 0.5, 0.5))[0] == pytest.approx(unit_cube)
    assert equivalent_diameters([math.pi], 2)[0] == pytest.approx(2.0)
    assert size_distance(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert math.isnan(size_distance(np.array([]), np.array([1.0])))


def test_3d_volume_matches_like_an_image() -> None:
    true = np.zeros((3, 4, 4), np.uint32)
    true[0:2, 0:2, 0:2] = 5
    pred = true.copy()
    pred[2, 3, 3] = 1  # a one-voxel false positive
    ev = InstanceEvaluator(["background", "pore"], ndim=3, spacing=(2.0, 1.0, 1.0))
    ev.add_image(pred, true, {5: 1}, {5: 1, 1: 1})
    m = ev.result()["per_class"]["pore"]
    assert m["pq"] == pytest.approx(1 / 1.5) and m["count_error_signed"] == 1.0
    assert m["mean_diameter_true"] == pytest.approx((6 * 16 / math.pi) ** (1 / 3))
