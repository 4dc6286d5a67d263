"""Confusion matrices of torch tensors that skip the ignore index, and their scores.

The per-class Jaccard is :func:`dlpipe.evaluation.metrics.jaccard` (one implementation).
"""

from __future__ import annotations

import numpy as np
import torch

from dlpipe.evaluation.metrics import jaccard
from dlpipe.labels import IGNORE_INDEX

__all__ = ["confusion", "jaccard", "mean_jaccard", "pixel_error"]


def confusion(
    pred: torch.Tensor, target: torch.Tensor, n_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """(C, C) int64 counts, rows = truth, columns = prediction, over labelled voxels.

    Parameters
    ----------
    pred, target : integer tensors of the same shape (class indices)
    """
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    idx = t[keep] * n_classes + p[keep]
    counts = torch.bincount(idx.cpu(), minlength=n_classes * n_classes)
    return counts.numpy().reshape(n_classes, n_classes).astype(np.int64)


def mean_jaccard(cm: np.ndarray) -> float:
    """Mean of the defined per-class Jaccard indices (NaN if none is defined)."""
    j = jaccard(cm)
    return float(np.nanmean(j)) if np.isfinite(j).any() else float("nan")


def pixel_error(cm: np.ndarray) -> float:
    """Fraction of labelled voxels predicted wrong."""
    total = cm.sum()
    return float((total - np.trace(cm)) / total) if total else float("nan")
