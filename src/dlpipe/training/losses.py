"""Segmentation losses that honour an ignore index.

Every loss takes ``logits`` of shape ``(N, C, *S)`` (float) and ``target`` of shape
``(N, *S)`` (int64 class indices, ``ignore_index`` for unlabelled voxels) and returns a
scalar. Ignored voxels contribute nothing, neither to sums nor to counts. A batch with no
labelled voxel gives a loss of 0 (with a gradient of 0), never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlpipe.errors import UserError
from dlpipe.labels import IGNORE_INDEX

LOSSES = ("ce", "weighted_ce", "dice", "jaccard2", "focal")


def _flatten(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax probabilities (V, C), one-hot truth (V, C) and class indices (V,) of the
    labelled voxels only."""
    c = logits.shape[1]
    flat = logits.movedim(1, -1).reshape(-1, c)
    t = target.reshape(-1)
    keep = t != ignore_index
    flat, t = flat[keep], t[keep].long()
    prob = torch.softmax(flat.float(), dim=1)
    onehot = F.one_hot(t, c).to(prob.dtype)
    return prob, onehot, t


class CrossEntropy(nn.Module):
    """Mean cross-entropy over labelled voxels; with ``weight``: Σ w_y·nll / Σ w_y."""

    def __init__(
        self, weight: Sequence[float] | None = None, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits.float(), target.long(), weight=self.weight, ignore_index=self.ignore_index
        )


class _SoftOverlap(nn.Module):
    """1 − mean over classes of a soft overlap score of p = softmax and y = one-hot."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, y, _ = _flatten(logits, target, self.ignore_index)
        if y.shape[0] == 0:
            return logits.sum() * 0.0
        inter = (p * y).sum(0)
        return 1 - self._score(p, y, inter).mean()

    def _score(self, p: torch.Tensor, y: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        """Per-class score from probabilities, one-hot truth and their intersection Σ p·y."""
        raise NotImplementedError


class SoftDice(_SoftOverlap):
    """1 − mean over classes of (2 Σ p·y + s) / (Σ p + Σ y + s), p = softmax, y = one-hot."""

    def _score(self, p: torch.Tensor, y: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return (2 * inter + self.smooth) / (p.sum(0) + y.sum(0) + self.smooth)


class SoftJaccard2(_SoftOverlap):
    """The seeds' soft Jaccard²: per class I = Σ y·ỹ, J₂ = (I + s) / (Σ y² + Σ ỹ² − I + s);
    loss = 1 − mean over classes of J₂ (ỹ = softmax probabilities, y = one-hot)."""

    def _score(self, p: torch.Tensor, y: torch.Tensor, inter: torch.Tensor) -> torch.Tensor:
        return (inter + self.smooth) / ((y * y).sum(0) + (p * p).sum(0) - inter + self.smooth)


class Focal(nn.Module):
    """Focal loss: mean over labelled voxels of −α_y (1 − p_y)^γ log p_y (α = 1 without weights)."""

    def __init__(
        self,
        gamma: float = 2.0,
        weight: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.gamma, self.ignore_index = gamma, ignore_index
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = logits.shape[1]
        flat = logits.movedim(1, -1).reshape(-1, c).float()
        t = target.reshape(-1)
        keep = t != self.ignore_index
        if not bool(keep.any()):
            return logits.sum() * 0.0
        flat, t = flat[keep], t[keep].long()
        logp = torch.log_softmax(flat, dim=1).gather(1, t[:, None])[:, 0]
        term = -((1 - logp.exp()) ** self.gamma) * logp
        if self.weight is not None:
            term = term * self.weight[t]
        return term.mean()


class WeightedSum(nn.Module):
    """Σ_k w_k · loss_k; the terms are logged separately by :meth:`terms`."""

    def __init__(self, terms: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = {k: float(w) for k, (w, _) in terms.items()}
        self.parts = nn.ModuleDict({k: m for k, (_, m) in terms.items()})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * self.parts[k](logits, target) for k, w in self.weights.items())


def inverse_frequency_weights(counts: Sequence[int]) -> list[float]:
    """Class weights w_c = V / (C · n_c) from labelled-voxel counts (absent classes get 0).

    With balanced classes every weight is 1.
    """
    counts = [int(c) for c in counts]
    total, present = sum(counts), sum(1 for c in counts if c > 0)
    return [total / (present * c) if c > 0 else 0.0 for c in counts]


def make_loss(
    terms: Mapping[str, float],
    *,
    n_classes: int,
    class_weights: str | Sequence[float] | None = None,
    class_counts: Sequence[int] | None = None,
    focal_gamma: float = 2.0,
    smooth: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> WeightedSum:
    """A weighted sum of named losses, e.g. ``{"ce": 1, "dice": 1}``.

    Parameters
    ----------
    terms : mapping of loss name (one of ``ce``, ``weighted_ce``, ``dice``, ``jaccard2``,
        ``focal``) to its weight; zero weights are dropped.
    class_weights : ``"inverse_frequency"`` (needs ``class_counts``), a list of one weight per
        class, or None (then ``weighted_ce`` falls back to inverse frequency). Used by
        ``weighted_ce`` and ``focal``.
    """
    unknown = sorted(set(terms) - set(LOSSES))
    if unknown:
        raise UserError(f"unknown loss {unknown[0]!r} (one of {', '.join(LOSSES)})")
    active = {k: float(w) for k, w in terms.items() if float(w) != 0.0}
    if not active:
        raise UserError("the loss has no term with a non-zero weight")
    weights: list[float] | None
    if class_weights is None or class_weights == "inverse_frequency":
        weights = (
            inverse_frequency_weights(class_counts)
            if class_counts is not None and (class_weights or "weighted_ce" in active)
            else None
        )
    elif isinstance(class_weights, str):
        raise UserError(f"unknown class_weights {class_weights!r} (inverse_frequency or a list)")
    else:
        weights = [float(w) for w in class_weights]
    if weights is not None and len(weights) != n_classes:
        raise UserError(f"class_weights has {len(weights)} values for {n_classes} classes")
    if "weighted_ce" in active and weights is None:
        raise UserError("weighted_ce needs class_weights or class counts")
    out: dict[str, tuple[float, nn.Module]] = {}
    for name, w in active.items():
        if name == "ce":
            module: nn.Module = CrossEntropy(None, ignore_index)
        elif name == "weighted_ce":
            module = CrossEntropy(weights, ignore_index)
        elif name == "dice":
            module = SoftDice(smooth, ignore_index)
        elif name == "jaccard2":
            module = SoftJaccard2(smooth, ignore_index)
        else:
            focal_w = weights if class_weights is not None else None
            module = Focal(focal_gamma, focal_w, ignore_index)
        out[name] = (w, module)
    return WeightedSum(out)
