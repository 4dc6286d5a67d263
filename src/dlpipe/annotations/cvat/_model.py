"""Plain records for what a CVAT export holds: shapes, frames, the export's metadata, and
the tally of what was skipped while reading and painting."""

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


#: Kind codes of :class:`ShapeColumns` (index into this tuple).
COLUMN_KINDS = ("polygon", "ellipse", "box", "polyline", "points")


@dataclass(slots=True)
class ShapeColumns:
    """The polygons, ellipses, boxes, polylines and points of one frame, as columns.

    The reader's fast path: a frame holding only these kinds is kept as arrays, not as
    one :class:`Shape` per annotation, and rasterised from them in one go.

    Attributes
    ----------
    kind : (n,) int8 index into :data:`COLUMN_KINDS`
    label, source : n strings
    order, z_order, group_id : (n,) int64 (document order, paint order, group)
    occluded : (n,) bool
    attributes : n dicts of custom attributes
    params : (n, 5) float64: (cx, cy, rx, ry, rotation) of an ellipse, (xtl, ytl, xbr, ybr,
        rotation) of a box, unused for the point kinds
    offsets : (n + 1,) int64; the vertices of row k are ``points[offsets[k]:offsets[k + 1]]``
        (empty for ellipses and boxes)
    points : (P, 2) float64 (x, y) vertices
    """

    kind: np.ndarray
    label: list[str]
    order: np.ndarray
    z_order: np.ndarray
    group_id: np.ndarray
    occluded: np.ndarray
    source: list[str]
    attributes: list[dict[str, str]]
    params: np.ndarray
    offsets: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    def to_shapes(self) -> list[Shape]:
        """One :class:`Shape` per row (the general, slower representation)."""
        out = []
        for k in range(len(self.kind)):
            kind = COLUMN_KINDS[int(self.kind[k])]
            sh = Shape(
                kind=kind,
                label=self.label[k],
                order=int(self.order[k]),
                occluded=bool(self.occluded[k]),
                z_order=int(self.z_order[k]),
                group_id=int(self.group_id[k]),
                source=self.source[k],
                attributes=self.attributes[k],
            )
            if kind in ("ellipse", "box"):
                sh.params = tuple(float(v) for v in self.params[k, :4])
                sh.rotation = float(self.params[k, 4])
            else:
                sh.points = self.points[self.offsets[k] : self.offsets[k + 1]]
            out.append(sh)
        return out


class Frame:
    """One image (or video frame) with its shapes, in document order.

    ``shapes`` is a list of :class:`Shape`; a frame read by the fast path holds
    ``columns`` (:class:`ShapeColumns`) instead, and ``shapes`` is built from them on
    first access.
    """

    __slots__ = ("_shapes", "columns", "height", "id", "name", "subset", "task_id", "width")

    def __init__(
        self,
        id: int,
        name: str,
        width: int,
        height: int,
        subset: str = "",
        task_id: str = "",
        shapes: list[Shape] | None = None,
        columns: ShapeColumns | None = None,
    ) -> None:
        self.id, self.name, self.width, self.height = id, name, width, height
        self.subset, self.task_id = subset, task_id
        self._shapes = shapes
        self.columns = columns

    @property
    def shapes(self) -> list[Shape]:
        if self._shapes is None:
            self._shapes = self.columns.to_shapes() if self.columns is not None else []
        return self._shapes

    @shapes.setter
    def shapes(self, value: list[Shape]) -> None:
        self._shapes, self.columns = value, None

    @property
    def n_shapes(self) -> int:
        """Number of shapes (without building :class:`Shape` objects)."""
        if self._shapes is None and self.columns is not None:
            return len(self.columns)
        return len(self.shapes)

    def __repr__(self) -> str:
        return (
            f"Frame(id={self.id}, name={self.name!r}, {self.width}x{self.height}, "
            f"{self.n_shapes} shapes)"
        )


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


@dataclass
class Counts:
    """What was skipped, clipped, ignored or counted while reading and painting."""

    invalid: int = 0  # polygon < 3 points, NaN / inf / unreadable coordinates
    clipped: int = 0  # shapes reaching outside the image
    empty: int = 0  # shapes that cover no pixel centre inside the image
    ignored: dict[str, int] = field(default_factory=dict)  # polyline / points not drawn
    counted: dict[str, int] = field(default_factory=dict)  # skeleton / cuboid
    unknown_label: int = 0  # shapes dropped by the label map or unknown_label=skip
    padded_rle: int = 0  # short RLEs padded under lenient
    missing_images: int = 0
    tags: int = 0

    def bump(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def merge(self, other: Counts) -> None:
        """Add another tally to this one (a parser process's to the painter's)."""
        for name, value in vars(other).items():
            if isinstance(value, dict):
                mine = getattr(self, name)
                for key, n in value.items():
                    mine[key] = mine.get(key, 0) + n
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_metrics(self) -> dict[str, float]:
        out = {
            "skipped_invalid": self.invalid,
            "clipped": self.clipped,
            "empty": self.empty,
            "skipped_unknown_label": self.unknown_label,
            "padded_rle": self.padded_rle,
            "missing_images": self.missing_images,
            "tags": self.tags,
        }
        out |= {f"ignored_{k}": v for k, v in self.ignored.items()}
        out |= {f"counted_{k}": v for k, v in self.counted.items()}
        return {k: float(v) for k, v in out.items()}
