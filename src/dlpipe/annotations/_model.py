"""Plain records for what a CVAT export holds: shapes, frames, the export's metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Shapes that paint pixels (polyline and points only when configured).
AREA_KINDS = ("polygon", "ellipse", "box", "mask")
LINE_KINDS = ("polyline", "points")
COUNTED_KINDS = ("skeleton", "cuboid")


@dataclass(slots=True)
class Shape:
    """One annotation on one frame, in CVAT continuous pixel coordinates (x right, y down).

    ``points`` holds (n, 2) float64 (x, y) vertices for polygon / polyline / points;
    ``params`` holds (cx, cy, rx, ry) for an ellipse and (xtl, ytl, xbr, ybr) for a box;
    ``mask`` holds a (height, width) bool array whose top-left pixel is image pixel
    (row ``top``, column ``left``).
    """

    kind: str
    label: str
    order: int
    points: np.ndarray | None = None
    params: tuple[float, ...] = ()
    rotation: float = 0.0
    mask: np.ndarray | None = None
    left: int = 0
    top: int = 0
    occluded: bool = False
    z_order: int = 0
    group_id: int = 0
    source: str = ""
    track_id: int = -1
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Frame:
    """One image (or video frame) with its shapes, in document order."""

    id: int
    name: str
    width: int
    height: int
    subset: str = ""
    task_id: str = ""
    shapes: list[Shape] = field(default_factory=list)


@dataclass(slots=True)
class Meta:
    """What ``<meta>`` says: labels in order, and for video exports the frame range."""

    labels: list[str] = field(default_factory=list)
    mode: str = ""
    size: int = 0
    start_frame: int = 0
    stop_frame: int | None = None
    frame_step: int = 1
    original_size: tuple[int, int] | None = None  # (width, height)
    source: str = ""
