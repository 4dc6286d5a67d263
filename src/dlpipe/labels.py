"""Conventions of dlpipe's label volumes that every stage shares.

A label volume holds one uint8 class index per voxel; :data:`IGNORE_INDEX` marks a voxel
without a label (sparse annotation, outside the annotated slices). Training skips it in
its losses and metrics, evaluation leaves it out of the confusion matrix, and a prediction
never contains it. This module imports nothing from dlpipe, so every stage imports it.
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

IGNORE_INDEX = 255
"""Label value of an unlabelled voxel."""
