"""×2 downsampling for the multiscale pyramid (mean for images, mode for labels), and the
pyramid and root image of a label volume (``PRED.zarr``, ``CLEAN.zarr``).

Odd sizes round up (150 → 75 → 38 → 19): the last block along an odd axis holds one
voxel and is averaged (or voted) over what it holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dlpipe.stores import ngff

__all__ = [
    "downsample_mean",
    "downsample_mode",
    "level_shapes",
    "source_levels",
    "write_label_pyramid",
]


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    """Shapes of the pyramid levels 0..levels-1, each ceil(half) of the one before."""
    out = [tuple(int(s) for s in shape)]
    for _ in range(levels - 1):
        out.append(tuple((s + 1) // 2 for s in out[-1]))
    return out


def _pad_even(a: np.ndarray) -> np.ndarray:
    pad = [(0, s % 2) for s in a.shape]
    return np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a


def downsample_mean(a: np.ndarray) -> np.ndarray:
    """Mean of each 2×2×2 block.

    Parameters
    ----------
    a : ndarray, shape (z, y, x), uint8/uint16/int16/float32

    Returns
    -------
    ndarray, shape (ceil(z/2), ceil(y/2), ceil(x/2)), same dtype (integers rounded half
    up).
    """
    a = _pad_even(a)
    if a.dtype == np.float32:
        # the mean of pairs, one axis at a time (halves first: a sum of values near the
        # float32 maximum would overflow to inf)
        half = np.float32(0.5)
        s = a[0::2] * half
        s += a[1::2] * half
        s = s[:, 0::2] * half + s[:, 1::2] * half
        return s[:, :, 0::2] * half + s[:, :, 1::2] * half
    acc = np.uint16 if a.dtype == np.uint8 else np.int32  # 8 values cannot overflow these
    # sum pairs one axis at a time: the biggest temporary is half the input
    s = a[0::2].astype(acc)
    s += a[1::2]
    s = s[:, 0::2] + s[:, 1::2]
    s = s[:, :, 0::2] + s[:, :, 1::2]
    s += 4  # integer mean rounded half up: floor((sum + 4) / 8)
    s >>= 3
    return s.astype(a.dtype)


def downsample_mode(a: np.ndarray) -> np.ndarray:
    """Most frequent label of each 2×2×2 block (ties: the smallest label).

    Parameters
    ----------
    a : ndarray, shape (z, y, x), integer labels

    Returns
    -------
    ndarray, shape (ceil(z/2), ceil(y/2), ceil(x/2)), same dtype.
    """
    a = _pad_even(a)
    z, y, x = a.shape
    blocks = a.reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    values = np.unique(a)
    best = np.full((z // 2, y // 2, x // 2), values[0], dtype=a.dtype)
    best_count = np.zeros(best.shape, dtype=np.uint8)
    for v in values:
        c = (blocks == v).sum(axis=(1, 3, 5), dtype=np.uint8)
        better = c > best_count
        best[better] = v
        best_count[better] = c[better]
    return best


def source_levels(path: str | Path | None, labels_name: str = "phases") -> int:
    """The number of pyramid levels of the store ``path`` (its root image, else its labels).

    1 for a TIFF, a bare array, a missing store or one without NGFF attributes.
    """
    if path is None:
        return 1
    path = Path(path)
    for node in (path, path / "labels" / labels_name):
        meta = node / "zarr.json"
        if not meta.is_file():
            meta = node / ".zattrs"
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        attrs = data.get("attributes", data) if meta.name == "zarr.json" else data
        ome = attrs.get("ome", attrs) if isinstance(attrs, dict) else {}
        datasets = ((ome.get("multiscales") or [{}])[0]).get("datasets") or []
        if datasets:
            return len(datasets)
    return 1


def _downsample_mode_nd(a: np.ndarray) -> np.ndarray:
    """:func:`downsample_mode` of a (z, y, x) or (y, x) array."""
    return downsample_mode(a) if a.ndim == 3 else downsample_mode(a[None])[0]


def write_label_pyramid(
    store: str | Path, labels_name: str, levels: int, *, image_name: str | None = None
) -> None:
    """Give a label volume its pyramid and a root image, as NGFF 0.5 (Zarr v3) asks.

    Reads ``STORE/labels/<labels_name>/0`` slab by slab and writes levels ``1 ..
    levels - 1`` (mode ×2 downsampling, as the labels of ``VOL.zarr``), then the root image
    ``STORE/0 .. levels - 1``: the same uint8 label values as a hidden grey image (OMERO
    channel ``active: false``; ``multiscales`` type ``mode``, see :func:`ngff.holds_labels`),
    so that NGFF readers (``ome_zarr info``, napari-ome-zarr) find an image whose ``labels``
    they show. Level 0 of the labels is not rewritten.

    Parameters
    ----------
    store : a label volume written with the attributes of :mod:`dlpipe.stores.ngff`
    labels_name : the label image's name
    levels : number of levels (the input's pyramid; at least 1)
    image_name : name of the root image (default the store's stem); also the title of the
        labels, so napari names their layer ``<labels_name>: <image_name>`` (``phases:
        prediction``) and shows it (:func:`ngff.label_title`)

    Notes
    -----
    Re-running replaces the levels it writes: a killed run is finished by calling it again.
    """
    store = Path(store)
    root = zarr.open_group(str(store), mode="r+")
    grp = root[f"labels/{labels_name}"]
    base = grp["0"]
    _, size, unit = ngff.spatial_metadata(dict(grp.attrs))
    size = size or [1.0] * base.ndim
    names = list(ngff.AXES[-base.ndim :])
    shapes = level_shapes(base.shape, max(1, int(levels)))

    def create(node: Any, key: str, shape: tuple[int, ...]) -> Any:
        return node.create_array(
            key,
            shape=shape,
            chunks=tuple(min(c, s) for c, s in zip(base.chunks, shape, strict=True)),
            dtype="uint8",
            fill_value=0,
            dimension_names=names,
            overwrite=True,
        )

    step = base.chunks[0] if base.ndim == 3 else base.shape[0]
    out0 = create(root, "0", base.shape)
    for z0 in range(0, base.shape[0], step):
        out0[z0 : z0 + step] = base[z0 : z0 + step]
    prev = base
    for k, shape in enumerate(shapes[1:], start=1):
        lab, img = create(grp, str(k), shape), create(root, str(k), shape)
        if base.ndim == 3:
            for z0 in range(0, prev.shape[0], 2 * step):
                data = _downsample_mode_nd(prev[z0 : z0 + 2 * step])
                lab[z0 // 2 : z0 // 2 + data.shape[0]] = data
                img[z0 // 2 : z0 // 2 + data.shape[0]] = data
        else:
            data = _downsample_mode_nd(prev[...])
            lab[...] = data
            img[...] = data
        prev = lab
    n = len(shapes)
    attrs = dict(grp.attrs)
    ome = dict(attrs.get("ome", {}))
    ome["multiscales"] = ngff.multiscales(labels_name, n, size, unit, "0.5", method="mode")
    ome["omero"] = ngff.label_title(image_name or store.stem, visible=True)
    grp.attrs["ome"] = ome
    values = [c["label-value"] for c in ome.get("image-label", {}).get("colors", [])] or [0]
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": ngff.multiscales(
            image_name or store.stem, n, size, unit, "0.5", method="mode"
        ),
        "omero": ngff.hidden_channel("label values", max(values)),
    }
