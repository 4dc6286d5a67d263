"""Conventions of dlpipe's label volumes that every stage shares.

A label volume holds one uint8 class index per voxel; :data:`IGNORE_INDEX` marks a voxel
without a label (sparse annotation, outside the annotated slices). Training skips it in
its losses and metrics, evaluation leaves it out of the confusion matrix, and a prediction
never contains it. This module imports nothing from dlpipe, so every stage imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["IGNORE_INDEX", "config_class_names"]

IGNORE_INDEX = 255
"""Label value of an unlabelled voxel."""


def config_class_names(stored: Sequence[str], configured: Sequence[str] | None) -> list[str] | None:
    """The config's class names for a store whose class 0 is CVAT's ``background``.

    CVAT has no label for unannotated pixels and dlpipe's CVAT reader names class 0
    ``background``; the config (``evaluation.classes``) names the same class after the
    material (``matrix``). When the store's other names agree with the config's, the
    config's names are the ones to use, so that training, prediction and evaluation log
    one set of names. Otherwise None (keep the store's).

    >>> config_class_names(["background", "fibre", "pore"], ["matrix", "fibre", "pore"])
    ['matrix', 'fibre', 'pore']
    >>> config_class_names(["background", "nucleus"], ["matrix", "fibre", "pore"]) is None
    True
    """
    if not configured or not stored or stored[0] != "background":
        return None
    if len(stored) != len(configured) or list(stored[1:]) != list(configured[1:]):
        return None
    return list(configured)
