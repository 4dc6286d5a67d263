"""Confusion matrices and Jaccard indices that skip the ignore index."""

from __future__ import annotations

import numpy as np
import torch

from dlpipe.training.stores import IGNORE_INDEX


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


def jaccard(cm: np.ndarray) -> np.ndarray:
    """Per-class Jaccard TP / (TP + FP + FN) from a confusion matrix; NaN where the class is
    neither present nor predicted."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_jaccard(cm: np.ndarray) -> float:
    """Mean of the defined per-class Jaccard indices (NaN if none is defined)."""
    j = jaccard(cm)
    return float(np.nanmean(j)) if np.isfinite(j).any() else float("nan")


def pixel_error(cm: np.ndarray) -> float:
    """Fraction of labelled voxels predicted wrong."""
    total = cm.sum()
    return float((total - np.trace(cm)) / total) if total else float("nan")
