"""Augmentation: the dihedral group, and image and mask transformed together."""

from __future__ import annotations

import numpy as np

from dlpipe.training import Augment, apply_dihedral, dihedral_elements


def test_group_sizes_and_distinct_results():
    assert len(dihedral_elements(2)) == 8
    assert len(dihedral_elements(3)) == 48
    cube = np.arange(27).reshape(3, 3, 3)
    results = {apply_dihedral(cube, p, f).tobytes() for p, f in dihedral_elements(3)}
    assert len(results) == 48
    square = np.arange(9).reshape(3, 3)
    assert len({apply_dihedral(square, p, f).tobytes() for p, f in dihedral_elements(2)}) == 8


def test_known_element():
    a = np.array([[1, 2], [3, 4]])
    # transpose then flip the (new) first axis
    assert apply_dihedral(a, (1, 0), (True, False)).tolist() == [[2, 4], [1, 3]]
    # leading channel axis untouched
    img = np.stack([a, 10 * a])
    out = apply_dihedral(img, (1, 0), (True, False))
    assert out[1].tolist() == [[20, 40], [10, 30]]


def test_image_and_mask_move_together_2d_and_3d():
    rng = np.random.default_rng(0)
    aug = Augment(dihedral=True)
    for shape in ((5, 5), (4, 4, 4), (2, 4, 4)):
        mask = rng.integers(0, 3, shape).astype(np.uint8)
        image = np.stack([mask, mask]).astype(np.float32)
        seen = set()
        for _ in range(60):
            img2, mask2 = aug(image, mask, rng)
            assert img2.shape == image.shape and mask2.shape == mask.shape
            assert np.array_equal(img2[0], mask2) and np.array_equal(img2[1], mask2)
            seen.add(mask2.tobytes())
        # (2, 4, 4) may only swap y and x: 16 elements keep its shape
        assert len(seen) > 4


def test_intensity_changes_image_not_mask_and_is_reproducible():
    aug = Augment(dihedral=False, shift=0.1, noise=0.1, contrast=0.2, gamma=1.5)
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    image = np.full((1, 2, 2), 0.5, dtype=np.float32)
    a_img, a_mask = aug(image, mask, np.random.default_rng(7))
    b_img, _ = aug(image, mask, np.random.default_rng(7))
    assert np.array_equal(a_mask, mask) and np.array_equal(a_img, b_img)
    assert not np.allclose(a_img, image) and a_img.dtype == np.float32
    assert np.array_equal(image, np.full((1, 2, 2), 0.5, dtype=np.float32))  # input untouched


def test_invert_flips_the_normalised_image_and_off_draws_nothing():
    mask = np.zeros((2, 2), np.uint8)
    image = np.array([[[0.0, 0.25], [0.75, 1.0]]], np.float32)
    always, _ = Augment(dihedral=False, invert=1.0)(image, mask, np.random.default_rng(0))
    assert np.array_equal(always, 1 - image)
    # invert 0 draws no random number: the other augmentations see the same stream
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    Augment(dihedral=False, invert=0.0)(image, mask, rng_a)
    assert rng_a.random() == rng_b.random()
    flips = [
        np.array_equal(Augment(dihedral=False, invert=0.5)(image, mask, rng)[0], 1 - image)
        for rng in (np.random.default_rng(s) for s in range(200))
    ]
    assert 60 < sum(flips) < 140
