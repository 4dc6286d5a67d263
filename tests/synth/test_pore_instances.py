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


def test_pore_instance_slabs_equal_the_whole_volume_ids() -> None:
    """The slab by slab ids (what ``synth`` writes, bounded memory) are the one-pass ids."""
    from dlpipe.synth.phantom import fibre_composite, pore_instance_slabs, pore_instances

    shape = (37, 40, 44)  # 37 = 32 + 5: a partial last slab
    _, _, pores = fibre_composite(shape, np.random.default_rng(3), pore_fraction=0.05)
    whole = pore_instances(shape, pores)
    slabs = list(pore_instance_slabs(shape, pores, depth=8))
    assert [s.shape[0] for s in slabs] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(slabs), whole)
    assert len(np.unique(whole)) > 10  # enough pores to cross slab faces
