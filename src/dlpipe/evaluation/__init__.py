"""Evaluation of a segmentation against the truth: confusion matrix, per-class scores, plots.

Public API
----------
confusion_matrix
    Exact int64 confusion matrix accumulated slab by slab (Zarr, TIFF or NumPy).
jaccard
    Per-class Jaccard from a confusion matrix (the one implementation; training uses it too).
scores
    Jaccard, Dice, precision, recall and volume fractions per class; mean Jaccard.
error_blobs
    False-positive and false-negative connected components per class.
evaluate, evaluate_arrays
    The whole evaluation (JSON, CSV, figures, MLflow) from paths, or on arrays.
open_labels, write_labels, dlpipe_attrs
    Label volumes in Zarr, OME-Zarr and TIFF (from :mod:`dlpipe.stores.volume`).
test_range
    The test z-range of a volume's split.
evaluate_instances, evaluate_instance_images, InstanceEvaluator, match_detections,
average_precision, pair_iou
    Instance metrics: COCO matching by mask IoU, P/R/F1 at IoU 0.5, AP@[.50:.95], AP50, AP75.
"""

from dlpipe.evaluation.evaluate import evaluate, evaluate_arrays, resolve_z_ranges, write_metrics
from dlpipe.evaluation.instance_evaluate import evaluate_instances
from dlpipe.evaluation.instances import (
    InstanceEvaluator,
    average_precision,
    evaluate_instance_images,
    match_detections,
    pair_iou,
)
from dlpipe.evaluation.metrics import confusion_matrix, error_blobs, jaccard, scores
from dlpipe.evaluation.volumes import test_range
from dlpipe.stores.volume import dlpipe_attrs, open_labels, write_labels

__all__ = [
    "InstanceEvaluator",
    "average_precision",
    "confusion_matrix",
    "dlpipe_attrs",
    "error_blobs",
    "evaluate",
    "evaluate_arrays",
    "evaluate_instance_images",
    "evaluate_instances",
    "jaccard",
    "match_detections",
    "open_labels",
    "pair_iou",
    "resolve_z_ranges",
    "scores",
    "test_range",
    "write_labels",
    "write_metrics",
]
