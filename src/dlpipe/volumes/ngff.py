"""OME-Zarr (NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2) metadata, and opening a tiled volume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError

COMPLETE_MARKER = ".dlpipe_complete"
AXES = ("z", "y", "x")
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
"""Label colours (RGB) for values 1, 2, ...; 0 (background) is transparent."""


def _rgba(value: int) -> list[int]:
    if value == 0:
        return [0, 0, 0, 0]
    return [*PALETTE[(value - 1) % len(PALETTE)], 255]


def multiscales(
    name: str, n_levels: int, voxel_size: Sequence[float], unit: str, version: str, *, method: str
) -> list[dict[str, Any]]:
    """The ``multiscales`` list: axes z, y, x in ``unit``, scale ×2 per level."""
    datasets = []
    for k in range(n_levels):
        scale = [float(v) * 2**k for v in voxel_size]
        translation = [float(v) * (2**k - 1) / 2 for v in voxel_size]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if k:
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ms: dict[str, Any] = {
        "name": name,
        "axes": [{"name": a, "type": "space", "unit": unit} for a in AXES],
        "datasets": datasets,
        "type": method,
    }
    if version == "0.4":
        ms["version"] = "0.4"
    return [ms]


def image_attrs(
    name: str, n_levels: int, voxel_size: Sequence[float], unit: str, version: str
) -> dict[str, Any]:
    """Root attributes of the image (without the ``dlpipe`` key)."""
    ms = multiscales(name, n_levels, voxel_size, unit, version, method="mean")
    if version == "0.4":
        return {"multiscales": ms}
    return {"ome": {"version": "0.5", "multiscales": ms}}


def labels_group_attrs(names: Sequence[str], version: str) -> dict[str, Any]:
    """Attributes of the ``labels`` group."""
    if version == "0.4":
        return {"labels": list(names)}
    return {"ome": {"version": "0.5", "labels": list(names)}}


def label_image_attrs(
    name: str,
    n_levels: int,
    voxel_size: Sequence[float],
    unit: str,
    version: str,
    values: Sequence[int],
) -> dict[str, Any]:
    """Attributes of one label image ``labels/<name>``."""
    ms = multiscales(name, n_levels, voxel_size, unit, version, method="mode")
    image_label: dict[str, Any] = {
        "source": {"image": "../../"},
        "colors": [{"label-value": int(v), "rgba": _rgba(int(v))} for v in values],
    }
    if version == "0.4":
        return {"multiscales": ms, "image-label": image_label | {"version": "0.4"}}
    return {"ome": {"version": "0.5", "multiscales": ms, "image-label": image_label}}


def is_complete(path: str | Path) -> bool:
    """True when ``path`` is a tiled volume whose completion marker is written."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def open_volume(path: str | Path) -> tuple[Any, Any | None, dict[str, Any]]:
    """Open a volume written by ``dlpipe tile`` for reading.

    Parameters
    ----------
    path : path
        ``VOL.zarr``.

    Returns
    -------
    image : zarr.Array
        Level 0, shape (z, y, x).
    labels : zarr.Array or None
        Level 0 of the first label image (``labels/<name>/0``, uint8), if any.
    attrs : dict
        The ``dlpipe`` root attributes (statistics, split, source, ...).

    Raises
    ------
    UserError
        Not found, or no completion marker (half-written or not made by ``dlpipe tile``).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise UserError("volume not found", path=path)
    if not is_complete(path):
        raise UserError(
            f"volume is incomplete (no {COMPLETE_MARKER} marker): re-run "
            "`dlpipe tile` to finish it",
            path=path,
        )
    root = zarr.open_group(path, mode="r")
    attrs = dict(root.attrs.get("dlpipe", {}))
    image = root["0"]
    labels = None
    name = (attrs.get("labels") or {}).get("name")
    if name and f"labels/{name}/0" in root:
        labels = root[f"labels/{name}/0"]
    return image, labels, attrs
