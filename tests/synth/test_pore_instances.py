"""The synth truth pore instances (one id per pore ellipsoid) and one CVAT shape per pore."""

from __future__ import annotations

import numpy as np

from dlpipe.synth.cvat_export import pore_shapes
from dlpipe.synth.phantom import PORE, Pore, fibre_composite, pore_instances


def test_ids_are_the_pore_phase_one_per_ellipsoid() -> None:
    rng = np.random.default_rng(3)
    labels, _, pores = fibre_composite((24, 48, 48), rng, pore_fraction=0.02)
    ids = pore_instances(labels.shape, pores)
    assert ids.dtype == np.uint32
    assert np.array_equal(ids > 0, labels == PORE)
    assert set(np.unique(ids[ids > 0]).tolist()) <= set(range(1, len(pores) + 1))
    assert len(np.unique(ids[ids > 0])) > 0.8 * len(pores)


def test_two_touching_pores_stay_two() -> None:
    eye = np.eye(3)
    a = Pore(np.array([5.0, 8.0, 6.0]), np.array([3.0, 3.0, 3.0]), eye)
    b = Pore(np.array([5.0, 8.0, 11.0]), np.array([3.0, 3.0, 3.0]), eye)
    ids = pore_instances((10, 16, 18), [a, b])
    assert set(np.unique(ids).tolist()) == {0, 1, 2}
    # one connected component of the pore phase, two pores, two shapes
    shapes = pore_shapes(ids[5])
    assert [s["type"] for s in shapes] == ["polygon", "polygon"]


def test_a_pore_cut_in_two_is_one_mask() -> None:
    ids = np.zeros((12, 12), np.uint32)
    ids[2:9, 2:9] = 1
    ids[5, :] = 2  # pore 2 crosses pore 1: pore 1's pixels are two pieces
    shapes = pore_shapes(ids)
    assert [s["type"] for s in shapes] == ["mask", "polygon"]
    assert np.array_equal(shapes[0]["mask"], ids == 1)
    assert all(s["label"] == "pore" and s["z_order"] == "1" for s in shapes)
