"""The inputs of an instance evaluation: stores opened and checked, their attributes.

Readers of ``dlpipe evaluate --instances``' prediction and truth (:mod:`dlpipe.evaluation.
instance_evaluate`): dataset-like Zarrs with ``instances`` + ``semantic``, a prediction's
``source_kind``, class names, pixel size and its ``instances.csv`` (class and score per
object), and the check of the ``evaluation.instances`` settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlpipe.errors import UserError
from dlpipe.stores.instance_table import read_instance_scores

__all__ = [
    "check_params",
    "classes_of",
    "is_instance_dataset",
    "open_instances",
    "pixel_spacing",
    "pred_table",
    "source_kind",
]


def open_instances(path: Path, what: str) -> Any:
    import zarr  # deferred: heavy

    if not path.is_dir():
        raise UserError(f"{what}: not a Zarr folder", path=path)
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:
        raise UserError(f"{what}: cannot open as a Zarr group ({exc})", path=path) from None
    for name in ("instances", "semantic"):
        if name not in root:
            raise UserError(
                f"{what} has no `{name}` array (expected a dataset Zarr from "
                "`dlpipe cvat` or a Mask R-CNN prediction)",
                path=path,
            )
    if root["instances"].ndim != 3 or root["instances"].shape != root["semantic"].shape:
        raise UserError(
            f"{what}: `instances` and `semantic` must be (N, H, W) of one shape", path=path
        )
    return root


def is_instance_dataset(path: Path) -> bool:
    """Whether ``path`` is a Zarr group with ``instances`` and ``semantic`` arrays."""
    if not path.is_dir():
        return False
    try:
        import zarr  # deferred: heavy

        root = zarr.open_group(str(path), mode="r")
    except Exception:
        return False
    return "instances" in root and "semantic" in root


def source_kind(path: Path) -> str | None:
    """``dlpipe.source_kind`` of a prediction (``volume``: 3D objects of a tiled volume)."""
    import zarr  # deferred: heavy

    return (dict(zarr.open_group(str(path), mode="r").attrs).get("dlpipe") or {}).get("source_kind")


def pixel_spacing(root: Any) -> list[float] | None:
    """(y, x) pixel size of a dataset Zarr (attribute ``pixel_size``), or None."""
    attrs = dict(root.attrs)
    size = attrs.get("pixel_size") or (attrs.get("dlpipe") or {}).get("pixel_size")
    if size is None:
        return None
    size = [float(v) for v in (size if isinstance(size, list | tuple) else [size, size])]
    return size[-2:] if len(size) >= 2 else size * 2


def check_params(p: Mapping[str, Any]) -> None:
    """Refuse thresholds outside (0, 1] and a negative overlay count (one line, exit 2)."""
    thr = p["iou_thresholds"]
    if not isinstance(thr, list | tuple) or not thr:
        raise UserError(f"evaluation.instances.iou_thresholds must be a non-empty list, got {thr}")
    for key, vals in (("iou_thresholds", thr), ("f1_iou", [p["f1_iou"]])):
        for v in vals:
            if not isinstance(v, int | float) or not 0 < float(v) <= 1:
                raise UserError(f"evaluation.instances.{key}: {v} is not in (0, 1]")
    if int(p["overlays"]) < 0:
        raise UserError(f"evaluation.instances.overlays: {p['overlays']} is negative")


def classes_of(root: Any) -> list[str] | None:
    attrs = dict(root.attrs)
    classes = attrs.get("classes") or (attrs.get("dlpipe") or {}).get("classes")
    return [str(c) for c in classes] if classes else None


def pred_table(path: Path) -> dict[int, dict[int, tuple[int, float]]] | None:
    """{image: {instance_id: (class_id, score)}} from ``PRED.zarr/instances.csv``."""
    return read_instance_scores(path)
