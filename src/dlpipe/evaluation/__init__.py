"""Evaluation of a segmentation against the truth: confusion matrix, per-class scores, plots.

Public API
----------
confusion_matrix
    Exact int64 confusion matrix accumulated slab by slab (Zarr, TIFF or NumPy).
scores
    Jaccard, Dice, precision, recall and volume fractions per class; mean Jaccard.
error_blobs
    False-positive and false-negative connected components per class.
evaluate, evaluate_arrays
    The whole evaluation (JSON, CSV, figures, MLflow) from paths, or on arrays.
open_labels, test_range, write_labels
    Label volumes in Zarr, OME-Zarr and TIFF.
"""

from dlpipe.evaluation.evaluate import evaluate, evaluate_arrays, resolve_z_ranges, write_metrics
from dlpipe.evaluation.metrics import confusion_matrix, error_blobs, scores
from dlpipe.evaluation.volumes import dlpipe_attrs, open_labels, test_range, write_labels

__all__ = [
    "confusion_matrix",
    "dlpipe_attrs",
    "error_blobs",
    "evaluate",
    "evaluate_arrays",
    "open_labels",
    "resolve_z_ranges",
    "scores",
    "test_range",
    "write_labels",
    "write_metrics",
]
