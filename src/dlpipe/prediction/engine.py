"""Sliding-window prediction of one in-memory region, Gaussian-blended, batched."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from dlpipe.prediction.windows import gaussian_map, window_starts


def dihedral_ops(spatial: int, count: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The first ``count`` dihedral elements as (permutation, flipped axes) of ``spatial`` axes.

    ``spatial`` is 2 (8 elements) or 3 (48 elements). Element 0 is the identity.
    Permutations are only taken among axes of equal window size by the caller.
    """
    ops = []
    for perm in itertools.permutations(range(spatial)):
        for r in range(spatial + 1):
            for flips in itertools.combinations(range(spatial), r):
                ops.append((perm, flips))
    ops.sort(key=lambda o: (o[0] != tuple(range(spatial)), len(o[1]), o))
    return ops[:count]


def tta_ops(mode: str, window: tuple[int, ...], tta: int) -> list:
    """The dihedral elements test-time augmentation averages for a window.

    The first ``tta`` elements of :func:`dihedral_ops` (identity first; 8 in 2D/2.5D,
    48 in 3D) among those that keep the window's shape: axes are only swapped where the
    window sides are equal, so a (z, y, x) window with z != y == x has 16 usable elements
    (2 orders of y, x times 8 flips) and one with three different sides 8 (the flips).
    ``tta`` larger than the usable count gives them all. One forward pass per element
    per batch of windows.
    """
    spatial = 3 if mode == "3d" else 2
    ops = dihedral_ops(spatial, 48 if spatial == 3 else 8)
    keep = [o for o in ops if all(window[a] == window[p] for a, p in enumerate(o[0]))]
    return keep[: max(1, int(tta))]


def _forward(net: torch.nn.Module, x: torch.Tensor, ops: list, amp: bool) -> torch.Tensor:
    """Softmax probabilities of ``net`` on batch ``x`` (N, C, *S), averaged over ``ops``."""
    spatial = x.ndim - 2
    out = None
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    for perm, flips in ops:
        axes = [2 + a for a in flips]
        order = (0, 1, *(2 + p for p in perm))
        xi = x.flip(axes) if axes else x
        xi = xi.permute(order) if perm != tuple(range(spatial)) else xi
        with ctx:
            y = net(xi.contiguous())
        y = torch.softmax(y.float(), dim=1)
        if perm != tuple(range(spatial)):
            inv = [0] * len(order)
            for i, o in enumerate(order):
                inv[o] = i
            y = y.permute(inv)
        y = y.flip(axes) if axes else y
        out = y if out is None else out + y
    return out / len(ops)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.no_grad()
def predict_region(
    net: torch.nn.Module,
    region: np.ndarray,
    mode: str,
    window: tuple[int, ...],
    *,
    context: int = 1,
    overlap: float = 0.25,
    batch_size: int = 8,
    tta: int = 1,
    device: torch.device | None = None,
    amp: bool = False,
    forward: Callable | None = None,
) -> tuple[np.ndarray, int]:
    """Class probabilities of a normalised region by Gaussian-blended sliding windows.

    Parameters
    ----------
    net : U-Net in eval mode
    region : float32, (z, y, x), already normalised; every window axis must be at least
        the window side (pad before calling). For 2.5D the region holds ``context // 2``
        extra slices above and below the slices to predict.
    mode : "2d", "2.5d" or "3d"
    window : (y, x) for 2D/2.5D, (z, y, x) for 3D
    context : slices per 2.5D input (k), 1 otherwise
    overlap : fraction of a window shared with its neighbour (0.25)
    batch_size : windows per forward pass
    tta : dihedral elements averaged (1 = none; up to 8 in 2D, 48 in 3D; axes are only
        swapped where the window sides are equal, see :func:`tta_ops`); each batch of
        windows goes through the network once per element
    device, amp : where to run, and bfloat16 autocast on CUDA

    Returns
    -------
    probs : float32, (C, z', y, x) with z' = z - 2 * (context // 2)
    windows : number of windows run (forward passes = ceil(windows / batch_size) times
        ``len(tta_ops(mode, window, tta))``)
    """
    device = device or torch.device("cpu")
    half = context // 2
    nz, ny, nx = region.shape
    ops = tta_ops(mode, window, tta)
    g = torch.from_numpy(gaussian_map(window)).to(device)
    src = torch.from_numpy(np.ascontiguousarray(region, dtype=np.float32)).to(device)
    if mode == "3d":
        starts = list(
            itertools.product(
                *(window_starts(n, w, overlap) for n, w in zip(region.shape, window, strict=True))
            )
        )
        out_z = nz
    else:
        zs = range(half, nz - half)
        starts = [
            (z, y, x)
            for z in zs
            for y in window_starts(ny, window[0], overlap)
            for x in window_starts(nx, window[1], overlap)
        ]
        out_z = nz - 2 * half
    acc = None
    wsum = torch.zeros((out_z, ny, nx), dtype=torch.float32, device=device)
    for group in _batches(starts, batch_size):
        if mode == "3d":
            wz, wy, wx = window
            x = torch.stack([src[z : z + wz, y : y + wy, x : x + wx] for z, y, x in group])[:, None]
        else:
            wy, wx = window
            x = torch.stack(
                [src[z - half : z + half + 1, y : y + wy, x : x + wx] for z, y, x in group]
            )
        p = (forward or _forward)(net, x, ops, amp)
        if acc is None:
            acc = torch.zeros((p.shape[1], out_z, ny, nx), dtype=torch.float32, device=device)
        for (z, y, x0), pi in zip(group, p, strict=True):
            if mode == "3d":
                acc[:, z : z + wz, y : y + wy, x0 : x0 + wx] += pi * g
                wsum[z : z + wz, y : y + wy, x0 : x0 + wx] += g
            else:
                acc[:, z - half, y : y + wy, x0 : x0 + wx] += pi * g
                wsum[z - half, y : y + wy, x0 : x0 + wx] += g
    acc /= wsum
    return acc.cpu().numpy(), len(starts)
