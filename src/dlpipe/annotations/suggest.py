"""Which slices to annotate next: the most uncertain slices of a prediction.

``dlpipe predict`` records, per slice along each axis, the mean uncertainty of its
prediction (``PRED.zarr`` attribute ``dlpipe.uncertainty``: 1 - margin of the blended class
probabilities). :func:`suggest_slices` picks the N most uncertain slices that are not
annotated yet (``VOL.zarr``'s ``dlpipe.annotations``), at least ``min_gap`` slices from
each other and ``min_gap // 2`` from the annotated slices of their axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.annotations import AXES, annotation_record
from dlpipe.stores.volume import dlpipe_attrs

__all__ = ["MIN_GAP", "pick_uncertain", "suggest_slices"]

MIN_GAP = 4
"""Default smallest distance between two suggested slices of one axis."""


def pick_uncertain(
    uncertainty: Mapping[str, Sequence[float]],
    count: int,
    axes: Sequence[str],
    *,
    annotated: Mapping[str, Sequence[int]] | None = None,
    min_gap: int = MIN_GAP,
) -> list[tuple[str, int, float]]:
    """The ``count`` most uncertain slices, greedily, keeping ``min_gap`` apart.

    Parameters
    ----------
    uncertainty : {axis: [mean uncertainty of slice 0, 1, ...]}
    count : slices to pick (fewer when the gaps leave no more)
    axes : the axes to pick from
    annotated : slices already annotated: never picked, nor a slice closer than
        ``min_gap // 2`` to one of its axis
    min_gap : a slice closer than this to a picked slice of its axis is skipped

    Returns
    -------
    [(axis, index, uncertainty), ...] most uncertain first

    >>> pick_uncertain({"z": [0.1, 0.9, 0.8, 0.2, 0.7]}, 2, ["z"], min_gap=2)
    [('z', 1, 0.9), ('z', 4, 0.7)]
    """
    gap, near = max(int(min_gap), 1), max(int(min_gap) // 2, 1)
    done = {a: [int(i) for i in (annotated or {}).get(a, [])] for a in AXES}
    taken: dict[str, list[int]] = {a: [] for a in AXES}
    cands = sorted(
        ((float(u), a, i) for a in axes for i, u in enumerate(uncertainty.get(a, []))),
        key=lambda t: (-t[0], AXES.index(t[1]), t[2]),
    )
    out: list[tuple[str, int, float]] = []
    for u, axis, index in cands:
        if len(out) >= count:
            break
        if any(abs(index - j) < gap for j in taken[axis]):
            continue
        if any(abs(index - j) < near for j in done[axis]):
            continue
        taken[axis].append(index)
        out.append((axis, index, u))
    return out


def suggest_slices(
    volume: str | Path,
    pred: str | Path,
    count: int,
    axes: Sequence[str],
    shape: Sequence[int],
    *,
    min_gap: int = MIN_GAP,
) -> list[tuple[str, int, float]]:
    """The slices of ``volume`` to annotate next, from ``PRED.zarr``'s per-slice uncertainty.

    Raises
    ------
    UserError
        ``pred`` has no per-slice uncertainty, or its shape is not the volume's.
    """
    unc: Any = dlpipe_attrs(pred).get("uncertainty")
    if not isinstance(unc, Mapping):
        raise UserError(
            "no per-slice uncertainty (dlpipe.uncertainty) in the prediction: predict it "
            "with `dlpipe predict` of this version",
            path=pred,
        )
    for axis, n in zip(AXES, shape, strict=True):
        if len(unc.get(axis, [])) != int(n):
            raise UserError(
                f"the prediction has {len(unc.get(axis, []))} {axis}-slices, the volume {n}",
                path=pred,
            )
    if count < 1:
        raise UserError(f"--count {count}: need at least 1 slice")
    record = annotation_record(volume) or {}
    picked = pick_uncertain(unc, count, axes, annotated=record.get("slices") or {}, min_gap=min_gap)
    if not picked:
        raise UserError("no slice left to suggest (all annotated or too close)", path=volume)
    return picked
