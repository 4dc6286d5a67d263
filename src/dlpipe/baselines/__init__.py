"""Classical baselines (multi-Otsu, random forest on multiscale features), evaluated like
the networks.

Public API
----------
baseline
    Train on annotated slices, segment the volume, write it and evaluate it.
multi_otsu, random_forest
    The two methods on arrays.
held_out_ranges, training_slices
    Which z-slices train and which are evaluated.
"""

from dlpipe.baselines.classical import (
    METHODS,
    baseline,
    held_out_ranges,
    multi_otsu,
    random_forest,
    training_slices,
)

__all__ = [
    "METHODS",
    "baseline",
    "held_out_ranges",
    "multi_otsu",
    "random_forest",
    "training_slices",
]
