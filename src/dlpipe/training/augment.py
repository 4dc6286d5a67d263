"""Augmentations applied identically to an image patch and its mask.

Geometric transforms (the dihedral group: 8 elements in 2D, 48 in 3D) move image and mask
together; intensity transforms (value shift, Gaussian noise, contrast, gamma) touch the
image only. All randomness comes from the ``numpy.random.Generator`` passed in, so a patch
is reproducible from its seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def dihedral_elements(ndim: int) -> list[tuple[tuple[int, ...], tuple[bool, ...]]]:
    """All (axis permutation, flips) pairs of the hyper-octahedral group on ``ndim`` axes.

    ``ndim=2`` gives 8 elements, ``ndim=3`` gives 48.
    """
    perms = list(itertools.permutations(range(ndim)))
    flips = list(itertools.product((False, True), repeat=ndim))
    return [(p, f) for p in perms for f in flips]


def apply_dihedral(array: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    """Permute then flip the last ``len(perm)`` axes of ``array`` (leading axes untouched).

    Parameters
    ----------
    array : (..., *S) array, e.g. (C, Y, X) image, (Y, X) mask, (C, Z, Y, X) or (Z, Y, X)
    perm : permutation of range(len(S))
    flips : one bool per spatial axis (after permuting)
    """
    n = len(perm)
    lead = array.ndim - n
    out = np.transpose(array, tuple(range(lead)) + tuple(lead + p for p in perm))
    axes = tuple(lead + i for i, f in enumerate(flips) if f)
    if axes:
        out = np.flip(out, axes)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Augment:
    """Augmentation settings (the ``train.augment`` config section).

    Attributes
    ----------
    dihedral : draw a random element of the dihedral group (axis swaps only between
        axes of equal patch size, so the patch shape never changes)
    shift : value shift drawn from U(−shift, shift), added to the normalised image
    noise : Gaussian noise with sigma drawn from U(0, noise)
    contrast : contrast factor drawn from U(1 − contrast, 1 + contrast) about the patch mean
    gamma : gamma exponent drawn log-uniformly from [1/gamma, gamma] (1 = off), applied to
        normalised values inside [0, 1]
    invert : probability of inverting the normalised image (``1 - image``): dark objects on a
        bright background (bright-field, H&E) look like bright ones on a dark background
        (fluorescence) and back; 0 = off (no random number drawn)
    """

    dihedral: bool = True
    shift: float = 0.0
    noise: float = 0.0
    contrast: float = 0.0
    gamma: float = 1.0
    invert: float = 0.0

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one patch.

        Parameters
        ----------
        image : (C, *S) float32, normalised
        mask : (*S) uint8 class indices (255 = ignore)

        Returns
        -------
        image, mask : new arrays of the same shapes and dtypes
        """
        spatial = mask.shape
        if self.dihedral:
            options = [
                (p, f)
                for p, f in dihedral_elements(len(spatial))
                if all(spatial[p[i]] == spatial[i] for i in range(len(spatial)))
            ]
            perm, flips = options[int(rng.integers(len(options)))]
            image = apply_dihedral(image, perm, flips)
            mask = apply_dihedral(mask, perm, flips)
        image = image.astype(np.float32, copy=True)
        if self.invert > 0 and rng.random() < self.invert:
            image = np.float32(1) - image
        if self.contrast > 0:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast)
            m = image.mean()
            image = (image - m) * np.float32(c) + m
        if self.gamma > 1:
            g = float(np.exp(rng.uniform(-np.log(self.gamma), np.log(self.gamma))))
            inside = (image > 0) & (image < 1)
            image[inside] = image[inside] ** np.float32(g)
        if self.shift > 0:
            image += np.float32(rng.uniform(-self.shift, self.shift))
        if self.noise > 0:
            sigma = rng.uniform(0, self.noise)
            image += (sigma * rng.standard_normal(image.shape)).astype(np.float32)
        return image.astype(np.float32, copy=False), mask
