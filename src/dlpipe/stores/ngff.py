"""OME-Zarr (NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2) attributes: one builder, one palette.

Every image and label image dlpipe writes (``VOL.zarr``, ``PRED.zarr``, ``CLEAN.zarr``)
takes its attributes from here, so they carry the same axes, units, voxel size, label
colours and class names (label ``properties``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AXES",
    "PALETTE",
    "hidden_channel",
    "holds_labels",
    "image_attrs",
    "label_image_attrs",
    "label_title",
    "labels_group_attrs",
    "multiscales",
    "rgba",
    "spatial_metadata",
]

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


def rgba(value: int) -> list[int]:
    """The RGBA colour of label ``value``: transparent for 0, else the palette, cycled.

    >>> rgba(0), rgba(1), rgba(11)
    ([0, 0, 0, 0], [31, 119, 180, 255], [31, 119, 180, 255])
    """
    if value == 0:
        return [0, 0, 0, 0]
    return [*PALETTE[(value - 1) % len(PALETTE)], 255]


def multiscales(
    name: str,
    n_levels: int,
    voxel_size: Sequence[float],
    unit: str | None,
    version: str,
    *,
    method: str,
) -> list[dict[str, Any]]:
    """The ``multiscales`` list of a pyramid, scale ×2 per level.

    Parameters
    ----------
    name : the image's name
    n_levels : number of levels ``0 .. n_levels - 1``
    voxel_size : level-0 voxel size per axis; its length (3 or 2) picks the axes
        (z, y, x) or (y, x)
    unit : unit of every axis (None: no unit)
    version : ``"0.5"`` or ``"0.4"``
    method : downsampling ``type`` (``"mean"`` for images, ``"mode"`` for labels)
    """
    axes = AXES[-len(voxel_size) :]
    datasets = []
    for k in range(n_levels):
        scale = [float(v) * 2**k for v in voxel_size]
        translation = [float(v) * (2**k - 1) / 2 for v in voxel_size]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if k:
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ax: list[dict[str, Any]] = [{"name": a, "type": "space"} for a in axes]
    if unit:
        ax = [a | {"unit": unit} for a in ax]
    ms: dict[str, Any] = {"name": name, "axes": ax, "datasets": datasets, "type": method}
    if version == "0.4":
        ms["version"] = "0.4"
    return [ms]


def image_attrs(
    name: str, n_levels: int, voxel_size: Sequence[float], unit: str | None, version: str
) -> dict[str, Any]:
    """Root attributes of an image pyramid (without the ``dlpipe`` key)."""
    ms = multiscales(name, n_levels, voxel_size, unit, version, method="mean")
    if version == "0.4":
        return {"multiscales": ms}
    return {"ome": {"version": "0.5", "multiscales": ms}}


def hidden_channel(label: str, end: int) -> dict[str, Any]:
    """OMERO rendering settings of a one-channel image that viewers should not show.

    The root image of a label volume holds the label values themselves; napari-ome-zarr
    reads ``active: false`` as a hidden layer, so the labels show over the scan.

    Parameters
    ----------
    label : the channel's name
    end : the largest value (the contrast window is ``0 .. end``)
    """
    return {
        "channels": [
            {
                "active": False,
                "coefficient": 1,
                "color": "FFFFFF",
                "family": "linear",
                "inverted": False,
                "label": label,
                "window": {"min": 0, "max": 255, "start": 0, "end": max(1, int(end))},
            }
        ],
        "rdefs": {"model": "greyscale"},
    }


def label_title(title: str, *, visible: bool) -> dict[str, Any]:
    """OMERO settings that give a label image its layer name in napari.

    napari-ome-zarr names a label layer ``labels/<group path>`` (``labels/labels/phases``)
    unless the label image has an OMERO channel: then ``<multiscales name>: <channel label>``
    (``phases: prediction``), shown when the channel is ``active``. The label colours stay
    those of ``image-label``; no ``window`` (a napari Labels layer has no contrast limits).

    Parameters
    ----------
    title : what the labels are (``reference``, ``prediction``, ``clean``, ...)
    visible : whether napari shows the layer when it opens the store
    """
    return {
        "channels": [{"active": bool(visible), "color": "FFFFFF", "label": str(title)}],
        "rdefs": {"model": "color"},
    }


def holds_labels(attrs: Mapping[str, Any]) -> bool:
    """Whether a group's root image holds label values (a label volume), not grey values.

    The root image of ``PRED.zarr`` / ``CLEAN.zarr`` is mode-downsampled (``multiscales``
    type ``mode``); a scan's is ``mean``.
    """
    ome = attrs.get("ome", attrs)
    ms = (ome.get("multiscales") or [{}])[0]
    return ms.get("type") == "mode"


def labels_group_attrs(names: Sequence[str], version: str) -> dict[str, Any]:
    """Attributes of the ``labels`` group listing the label images ``names``."""
    if version == "0.4":
        return {"labels": list(names)}
    return {"ome": {"version": "0.5", "labels": list(names)}}


def label_image_attrs(
    name: str,
    n_levels: int,
    voxel_size: Sequence[float],
    unit: str | None,
    version: str,
    values: Sequence[int] | None = None,
    *,
    classes: Sequence[str] | None = None,
    title: str | None = None,
    visible: bool = False,
) -> dict[str, Any]:
    """Attributes of one label image ``labels/<name>``.

    Parameters
    ----------
    name, n_levels, voxel_size, unit, version : as :func:`multiscales`
    values : the label values to give colours (default: ``0 .. len(classes) - 1``)
    classes : class names; ``classes[v]`` becomes the ``properties`` entry
        ``{"label-value": v, "name": classes[v]}`` of each value ``v`` it names
    title, visible : with ``title``, the OMERO channel of :func:`label_title` (napari's
        layer name ``<name>: <title>``, shown or hidden on opening)

    Returns
    -------
    dict
        ``multiscales`` (method ``mode``) and ``image-label`` (``source`` the parent
        image ``../../``, ``colors`` from :data:`PALETTE`, ``properties`` when ``classes``),
        and ``omero`` when ``title``.
    """
    names = list(classes or [])
    vals = [int(v) for v in (range(len(names)) if values is None else values)]
    ms = multiscales(name, n_levels, voxel_size, unit, version, method="mode")
    image_label: dict[str, Any] = {
        "source": {"image": "../../"},
        "colors": [{"label-value": v, "rgba": rgba(v)} for v in vals],
    }
    if names:
        image_label["properties"] = [
            {"label-value": v, "name": names[v]} for v in vals if 0 <= v < len(names)
        ]
    extra = {"omero": label_title(title, visible=visible)} if title else {}
    if version == "0.4":
        return {"multiscales": ms, "image-label": image_label | {"version": "0.4"}} | extra
    return {"ome": {"version": "0.5", "multiscales": ms, "image-label": image_label} | extra}


def spatial_metadata(
    attrs: Mapping[str, Any], level: str = "0"
) -> tuple[list[str], list[float] | None, str | None]:
    """Axes, voxel size and unit of level ``level`` from a group's NGFF attributes.

    Parameters
    ----------
    attrs : the attributes of an image or label image group (0.5 ``ome`` or 0.4 layout)
    level : the dataset path whose ``scale`` transform is the voxel size

    Returns
    -------
    axes : list of str
        Axis names ([] when there is no ``multiscales``).
    voxel_size : list of float or None
        The level's ``scale`` (None when absent).
    unit : str or None
        The unit of the last axis (None when absent).
    """
    ome = attrs.get("ome", attrs)
    ms = (ome.get("multiscales") or [{}])[0]
    raw_axes = ms.get("axes", [])
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in raw_axes]
    unit = next(
        (a.get("unit") for a in reversed(raw_axes) if isinstance(a, dict) and a.get("unit")),
        None,
    )
    voxel_size = None
    for ds in ms.get("datasets", []):
        if ds.get("path") == level:
            for t in ds.get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    voxel_size = [float(v) for v in t["scale"]]
    return axes, voxel_size, unit
