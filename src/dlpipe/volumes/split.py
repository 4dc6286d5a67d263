"""Train / val / test split of a volume into contiguous z-slabs, with an optional gap."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from dlpipe.errors import UserError

SUBSETS = ("train", "val", "test")


def z_split(
    nz: int,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    gap: int = 0,
    ranges: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Contiguous half-open z ranges for train, val and test.

    Parameters
    ----------
    nz : int
        Number of slices.
    fractions : 3 floats
        Shares of train, val, test in the slices left after the gaps (normalised to sum 1).
        A zero share gives an empty subset ``[z, z]``.
    gap : int
        Slices left out between consecutive non-empty subsets (against leakage through
        3D context or correlated neighbouring slices).
    ranges : mapping or None
        Explicit ``{"train": [z0, z1], "val": [...], "test": [...]}``; overrides fractions.

    Returns
    -------
    dict
        ``{"train": [z0, z1], "val": [z0, z1], "test": [z0, z1], "gap": gap}``.
    """
    if gap < 0:
        raise UserError(f"split gap must be >= 0, got {gap}")
    if ranges:
        out: dict[str, Any] = {}
        for name in SUBSETS:
            r = ranges.get(name, [0, 0])
            if len(r) != 2 or not 0 <= r[0] <= r[1] <= nz:
                raise UserError(f"split range {name}={list(r)} is not inside [0, {nz}]")
            out[name] = [int(r[0]), int(r[1])]
        spans = sorted(out[n] for n in SUBSETS if out[n][1] > out[n][0])
        for a, b in itertools.pairwise(spans):
            if b[0] < a[1] + gap:
                raise UserError(f"split ranges {a} and {b} overlap or are closer than gap {gap}")
        return out | {"gap": int(gap)}
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise UserError(f"split fractions must be 3 non-negative numbers, got {list(fractions)}")
    total = float(sum(fractions))
    shares = [f / total for f in fractions]
    n_gaps = sum(1 for s in shares if s > 0) - 1
    usable = nz - gap * max(n_gaps, 0)
    if usable < sum(1 for s in shares if s > 0):
        raise UserError(
            f"volume of {nz} slices is too thin for the split {list(fractions)} with gap {gap}"
        )
    sizes = [round(s * usable) for s in shares]
    sizes[2] = usable - sizes[0] - sizes[1]
    for i, s in enumerate(shares):  # every non-zero share gets at least one slice
        if s > 0 and sizes[i] <= 0:
            j = max(range(3), key=lambda k: sizes[k])
            sizes[j] -= 1
            sizes[i] += 1
    out = {}
    z = 0
    first = True
    for name, size in zip(SUBSETS, sizes, strict=True):
        if size > 0 and not first:
            z += gap
        out[name] = [z, z + size]
        z += size
        first = first and size == 0
    return out | {"gap": int(gap)}
