"""Prediction of one in-memory region: whole (one window) or Gaussian-blended sliding windows.

Public API
----------
predict_region
    Class probabilities of a normalised region, batched, under ``torch.inference_mode``.
amp_dtype
    The autocast type on CUDA (bfloat16 where the card supports it, else float16).
to_device
    A host array on the device (pinned host memory and an asynchronous copy on CUDA).
dihedral_ops, tta_ops
    Test-time augmentation elements.
"""

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


def amp_dtype() -> torch.dtype:
    """bfloat16 on a CUDA card that supports it (the range of float32), else float16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """``a`` as a float32 tensor on ``device``: on CUDA through pinned (page-locked) host
    memory with an asynchronous copy, so that the transfer runs at the bus's speed."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for 2D batches on the CPU (oneDNN's native layout: 1.2-1.5x faster
    for the demo's U-Net, benchmarks/RESULTS.md); contiguous otherwise (3D measured no
    faster)."""
    if x.ndim == 4 and x.device.type == "cpu":
        return torch.channels_last
    return torch.contiguous_format


def _forward(net: torch.nn.Module, x: torch.Tensor, ops: list, amp: bool) -> torch.Tensor:
    """Softmax probabilities of ``net`` on batch ``x`` (N, C, *S), averaged over ``ops``."""
    spatial = x.ndim - 2
    out = None
    ctx = (
        torch.autocast("cuda", dtype=amp_dtype())
        if amp and x.device.type == "cuda"
        else contextlib.nullcontext()
    )
    fmt = _memory_format(x)
    for perm, flips in ops:
        axes = [2 + a for a in flips]
        order = (0, 1, *(2 + p for p in perm))
        xi = x.flip(axes) if axes else x
        xi = xi.permute(order) if perm != tuple(range(spatial)) else xi
        with ctx:
            y = net(xi.contiguous(memory_format=fmt))
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


@torch.inference_mode()
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
    device, amp : where to run, and autocast on CUDA (:func:`amp_dtype`); the region
        goes to the card through pinned memory (:func:`to_device`)

    A window covering the whole region (y, x; or z, y, x in 3D) is the fast path of a
    fully convolutional net: z-slices (2D/2.5D) in batches of ``batch_size`` straight
    through the network, probabilities written in place, no blending (one window per
    voxel: the Gaussian weights cancel).

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
    src = to_device(region, device)
    spatial = tuple(region.shape) if mode == "3d" else tuple(region.shape[1:])
    if tuple(window) == spatial:
        return _whole(net, src, mode, half, ops, batch_size, amp, forward or _forward)
    g = torch.from_numpy(gaussian_map(window)).to(device)
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


def _whole(
    net: torch.nn.Module,
    src: torch.Tensor,
    mode: str,
    half: int,
    ops: list,
    batch_size: int,
    amp: bool,
    forward: Callable,
) -> tuple[np.ndarray, int]:
    """Probabilities of one window covering the whole region (z-slices in batches in 2D)."""
    if mode == "3d":
        p = forward(net, src[None, None], ops, amp)[0]
        return p.float().cpu().numpy(), 1
    nz = src.shape[0]
    out = None
    for z0 in range(half, nz - half, batch_size):
        z1 = min(z0 + batch_size, nz - half)
        if half == 0:
            x = src[z0:z1, None]
        else:  # 2.5D: the k slices around each z as channels
            x = src.unfold(0, 2 * half + 1, 1)[z0 - half : z1 - half].permute(0, 3, 1, 2)
        p = forward(net, x, ops, amp)
        if out is None:
            out = torch.empty((p.shape[1], nz - 2 * half, *src.shape[1:]), dtype=torch.float32)
        out[:, z0 - half : z1 - half] = p.transpose(0, 1).float().cpu()
    return out.numpy(), nz - 2 * half
