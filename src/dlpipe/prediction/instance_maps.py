"""The instance U-Net's maps of a whole image, window by window.

:func:`infer_maps` runs the network over an image of any size: windows of ``window`` pixels
(voxels) per axis, neighbours overlapping by twice ``margin``; each window keeps its inner
part (the full window at the image border), so every pixel comes from a window where it has
``margin`` pixels of context. Windows are zero padded to a multiple of ``2**(depth-1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlpipe.models.instance_unet import split_heads

__all__ = ["Maps", "infer_maps", "window_starts_margin"]


@dataclass
class Maps:
    """Foreground probability, normalised distance, boundary probability (float32) and the
    most likely object class (uint8, >= 1) of every pixel."""

    foreground: np.ndarray
    distance: np.ndarray
    boundary: np.ndarray
    classes: np.ndarray


def window_starts_margin(n: int, window: int, margin: int) -> list[int]:
    """Window starts along an axis of length ``n``: step ``window - 2 margin``, last flush."""
    if n <= window:
        return [0]
    step = max(1, window - 2 * margin)
    starts = list(range(0, n - window, step))
    return [*starts, n - window]


def infer_maps(
    net: torch.nn.Module,
    image: np.ndarray,
    n_classes: int,
    *,
    window: int | Sequence[int],
    margin: int | Sequence[int],
    multiple: int,
    device: Any = None,
) -> Maps:
    """The maps of one image.

    Parameters
    ----------
    net : the instance U-Net in eval mode (2D convolutions for (C, y, x), 3D for (C, z, y, x))
    image : (C, *S) float32, normalised (C: 1, or the 2.5D context slices)
    n_classes : semantic classes of the card
    window, margin : per axis (an int: the same on every axis)
    multiple : ``2 ** (depth - 1)``
    """
    img = np.asarray(image, np.float32)
    spatial = img.shape[1:]
    nd = len(spatial)
    win = [min(int(w), s) for w, s in zip(_per_axis(window, nd), spatial, strict=True)]
    mar = _per_axis(margin, nd)
    fg = np.zeros(spatial, np.float32)
    dist = np.zeros(spatial, np.float32)
    bnd = np.zeros(spatial, np.float32)
    cls = np.ones(spatial, np.uint8)
    starts = [window_starts_margin(s, w, m) for s, w, m in zip(spatial, win, mar, strict=True)]
    grid = np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, nd)
    dev = device or torch.device("cpu")
    with torch.inference_mode():
        for corner in grid:
            src = tuple(slice(int(c), int(c) + w) for c, w in zip(corner, win, strict=True))
            x = img[(slice(None), *src)]
            pad = [(0, -(-w // multiple) * multiple - w) for w in x.shape[1:]]
            if any(p[1] for p in pad):
                x = np.pad(x, [(0, 0), *pad])
            out = net(torch.from_numpy(np.ascontiguousarray(x))[None].to(dev))
            sem, b, d = split_heads(out.float(), n_classes)
            prob = torch.softmax(sem, 1)[0]
            crop = tuple(slice(0, w) for w in win)
            p_fg = (1 - prob[0])[crop]
            p_cls = (prob[1:].argmax(0) + 1)[crop] if n_classes > 2 else None
            keep, place = [], []
            for c, w, m, s in zip(corner, win, mar, spatial, strict=True):
                a = 0 if c == 0 else m
                e = w if c + w >= s else w - m
                keep.append(slice(a, e))
                place.append(slice(int(c) + a, int(c) + e))
            keep_t, place_t = tuple(keep), tuple(place)
            fg[place_t] = p_fg[keep_t].cpu().numpy()
            dist[place_t] = torch.sigmoid(d[0][crop])[keep_t].cpu().numpy()
            bnd[place_t] = torch.sigmoid(b[0][crop])[keep_t].cpu().numpy()
            if p_cls is not None:
                cls[place_t] = p_cls[keep_t].cpu().numpy().astype(np.uint8)
    return Maps(fg, dist, bnd, cls)


def _per_axis(value: int | Sequence[int], nd: int) -> list[int]:
    if isinstance(value, int | np.integer):
        return [int(value)] * nd
    vals = [int(v) for v in value]
    return vals[-nd:] if len(vals) >= nd else [vals[0]] * nd
