"""Streaming, hardened reader of "CVAT for images 1.1" and "CVAT for video 1.1" XML.

The file is fed in 1 MiB pieces to an :class:`lxml.etree.XMLParser` with a parser target
(libxml2's SAX events, no tree): each ``<image>``'s shapes arrive as attribute dicts and
are turned into a :class:`Frame` when the image ends, so memory does not grow with the
number of images, and no element object is built per shape. ``<meta>`` and each
``<track>`` are small and are built as elements. Tracks (video exports) are gathered per
frame and yielded after the document.

Security: entities are never resolved (``resolve_entities=False``), no DTD is loaded,
nothing is fetched from the network (``no_network=True``), ``huge_tree=False`` keeps
libxml2's size limits, and a DOCTYPE that declares any entity is refused from the
document's prolog, before the parser sees a byte of it.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from lxml import etree

from dlpipe.annotations.cvat._model import COLUMN_KINDS, Frame, Meta, Shape, ShapeColumns
from dlpipe.errors import UserError

_PARAMS = {"ellipse": ("cx", "cy", "rx", "ry"), "box": ("xtl", "ytl", "xbr", "ybr")}
SHAPE_TAGS = frozenset(
    {"polygon", "ellipse", "box", "mask", "polyline", "points", "tag", "skeleton", "cuboid"}
)
_CODE = {k: i for i, k in enumerate(COLUMN_KINDS)}  # kinds of the columnar fast path
_TRUE = frozenset({"1", "true", "True"})
_PARAM_KEYS = (("cx", "cy", "rx", "ry"), ("xtl", "ytl", "xbr", "ybr"))


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


class InvalidShape(ValueError):
    """Coordinates that cannot make a shape (skipped and counted, not an error)."""


def _floats(text: str | None, what: str) -> np.ndarray:
    if text is None:
        raise InvalidShape(f"no {what}")
    try:
        values = np.array(text.replace(";", ",").split(","), dtype=np.float64)
    except ValueError as exc:
        raise InvalidShape(f"unreadable {what}: {text[:40]!r}") from exc
    if not np.all(np.isfinite(values)):
        raise InvalidShape(f"non-finite {what}")
    return values


def _num(a: Any, key: str) -> float:
    text = a.get(key)
    if text is None:
        raise InvalidShape(f"no {key}")
    try:
        v = float(text)
    except ValueError as exc:
        raise InvalidShape(f"unreadable {key}={text!r}") from exc
    if not math.isfinite(v):
        raise InvalidShape(f"non-finite {key}")
    return v


def _int(text: str | None, default: int = 0) -> int:
    if text in (None, ""):
        return default
    try:
        return int(float(text))
    except ValueError:
        return default


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _floats_csv(text: str) -> np.ndarray:
    """Comma-separated numbers to float64 (NaN where a field is unreadable).

    NumPy's C text parser; a string it cannot read to the end (empty or junk fields)
    is read again field by field.
    """
    try:
        with warnings.catch_warnings():  # older NumPy warns and stops at the bad field
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(text, sep=",")
        if len(values) == text.count(",") + 1:
            return values
    except ValueError:  # NumPy >= 2.3: "could not be read to its end"
        pass
    return np.array([_float_or_nan(v) for v in text.split(",")], np.float64)


def decode_rle(
    rle: str, width: int, height: int, *, lenient: bool = False, where: str = "mask"
) -> tuple[np.ndarray, bool]:
    """Decode CVAT's mask RLE into a (height, width) bool array.

    Runs alternate background, foreground, background, ... starting with background,
    row-major over the mask's own box. The runs must sum to ``width * height``; with
    ``lenient`` a short sum is padded with background (a long sum is always an error).

    Returns
    -------
    mask : (height, width) bool
    padded : whether the tail was padded
    """
    try:
        runs = np.array([int(v) for v in rle.replace(" ", "").split(",") if v != ""], np.int64)
    except ValueError as exc:
        raise UserError(f"{where}: unreadable RLE {rle[:40]!r}") from exc
    if width <= 0 or height <= 0 or np.any(runs < 0):
        raise UserError(f"{where}: bad mask size {width}x{height} or negative RLE run")
    total, need = int(runs.sum()), width * height
    padded = False
    if total != need:
        if total < need and lenient:
            padded = True
        else:
            raise UserError(
                f"{where}: RLE runs sum to {total}, expected width*height = "
                f"{width}*{height} = {need}"
                + (" (--lenient pads a short tail)" if total < need else "")
            )
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    if padded:
        flat = np.concatenate([flat, np.zeros(need - total, bool)])
    return flat.reshape(height, width), padded


def _attributes(el: etree._Element) -> dict[str, str]:
    return {a.get("name", ""): (a.text or "") for a in el.iterfind("attribute")}


def _shape(
    kind: str,
    a: Any,
    custom: dict[str, str],
    order: int,
    *,
    lenient: bool,
    where: str,
    counts: Counts,
) -> Shape:
    """Build one shape from its tag and attribute mapping (raises InvalidShape for bad
    coordinates)."""
    shape = Shape(
        kind=kind,
        label=a.get("label", ""),
        order=order,
        occluded=a.get("occluded", "0") in _TRUE,
        z_order=_int(a.get("z_order")),
        group_id=_int(a.get("group_id")),
        source=a.get("source", ""),
        attributes=custom,
    )
    if kind in ("polygon", "polyline", "points"):
        xy = _floats(a.get("points"), "points")
        if len(xy) % 2:
            raise InvalidShape("odd number of point coordinates")
        shape.points = xy.reshape(-1, 2)
        if kind == "polygon" and len(shape.points) < 3:
            raise InvalidShape("polygon with fewer than 3 points")
    elif kind == "ellipse":
        shape.params = tuple(_num(a, k) for k in ("cx", "cy", "rx", "ry"))
        shape.rotation = _num(a, "rotation") if a.get("rotation") else 0.0
        if shape.params[2] <= 0 or shape.params[3] <= 0:
            raise InvalidShape("ellipse radius <= 0")
    elif kind == "box":
        shape.params = tuple(_num(a, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        shape.rotation = _num(a, "rotation") if a.get("rotation") else 0.0
    elif kind == "mask":
        left, top = int(_num(a, "left")), int(_num(a, "top"))
        width, height = int(_num(a, "width")), int(_num(a, "height"))
        shape.left, shape.top = left, top
        shape.mask, padded = decode_rle(
            a.get("rle", ""),
            width,
            height,
            lenient=lenient,
            where=f"{where}, mask #{order} (label {shape.label!r})",
        )
        counts.padded_rle += padded
    return shape


def _text(el: etree._Element | None, tag: str, default: str = "") -> str:
    if el is None:
        return default
    found = el.find(tag)
    return found.text.strip() if found is not None and found.text else default


def _meta(el: etree._Element) -> Meta:
    meta = Meta()
    container = None
    for tag in ("task", "job", "project"):
        container = el.find(tag)
        if container is not None:
            break
    labels = None
    if container is not None:
        labels = container.find("labels")
        if labels is None:  # project exports keep labels under project, tasks under tasks
            labels = container.find("tasks/task/labels")
    if labels is not None:
        for lab in labels.iterfind("label"):
            if lab.find("parent") is not None and (lab.find("parent").text or "").strip():
                continue  # skeleton sub-labels are parts, not classes
            meta.labels.append(_text(lab, "name"))
    task = container if container is not None and container.tag != "project" else None
    if task is not None:
        meta.mode = _text(task, "mode")
        meta.size = _int(_text(task, "size"), 0)
        meta.start_frame = _int(_text(task, "start_frame"), 0)
        stop = _text(task, "stop_frame")
        meta.stop_frame = _int(stop) if stop else None
        ff = _text(task, "frame_filter")
        if ff.startswith("step="):
            meta.frame_step = max(1, _int(ff[5:], 1))
        osz = task.find("original_size")
        if osz is not None:
            meta.original_size = (_int(_text(osz, "width")), _int(_text(osz, "height")))
    meta.source = _text(el, "source")
    return meta


_CHUNK = 1 << 20  # bytes fed to the parser at a time
_PROLOG_LIMIT = 16 << 20  # longest prolog (declaration, DOCTYPE, comments) accepted
_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_ROOT_START = re.compile(rb"<[^!?]")
_ENTITIES_REFUSED = (
    "XML declares entities in its DOCTYPE; refused (CVAT never writes them, "
    "and they are the vehicle of entity-expansion and external-entity attacks)"
)


def _read_prolog(stream: IO[bytes], name: str) -> bytes:
    """Read the document up to its root element's start tag (at least one chunk) and
    refuse a DOCTYPE that declares entities, before any byte reaches the parser.

    Returns the bytes read, which the caller feeds to the parser first.
    """
    head = b""
    while True:
        chunk = stream.read(_CHUNK)
        head += chunk
        text = head
        if text.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: scan its ASCII view
            text = head.decode("utf-16", errors="replace").encode("ascii", errors="replace")
        text = _COMMENT.sub(b"", text)
        root = _ROOT_START.search(text)
        prolog = text if root is None else text[: root.start()]
        if b"<!ENTITY" in prolog:
            raise UserError(_ENTITIES_REFUSED, path=name)
        if root is not None or not chunk:
            return head
        if len(head) > _PROLOG_LIMIT:
            raise UserError(
                f"no root element in the first {_PROLOG_LIMIT >> 20} MiB of the XML", path=name
            )


def _syntax_error(exc: etree.XMLSyntaxError, name: str) -> UserError:
    line, col = exc.position if exc.position else (exc.lineno, 0)
    msg = str(exc.msg if hasattr(exc, "msg") else exc).split(" (line")[0]
    if "entity" in msg.lower():
        return UserError(
            f"XML entity expansion refused at line {line}, column {col}: {msg}", path=name
        )
    return UserError(f"malformed XML at line {line}, column {col}: {msg}", path=name)


#: One child of an ``<image>``: tag, attributes, position among the image's children,
#: custom ``<attribute>`` values (None when it has none).
_Record = list[Any]


class _Target:
    """lxml parser target: each ``<image>`` becomes (attributes, records of its children);
    ``<meta>`` and ``<track>`` (direct children of the root) are built as elements.

    Finished items queue in ``done`` as ("image", (attrib, records)), ("meta", element) or
    ("track", element); nothing else is kept, so memory is one image (or track) at most.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.image: dict[str, str] | None = None
        self.records: list[_Record] = []
        self.attr_name: str | None = None  # the open <attribute> of a shape
        self.text: list[str] = []
        self.builder: etree.TreeBuilder | None = None
        self.done: list[tuple[str, Any]] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        depth = self.depth
        if self.builder is not None:
            self.builder.start(tag, attrib)
        elif depth == 3 and self.image is not None:
            self.records.append([tag, attrib, len(self.records), None])
        elif depth == 4 and self.image is not None and tag == "attribute":
            self.attr_name, self.text = attrib.get("name", ""), []
        elif depth == 2:
            if tag == "image":
                self.image, self.records = attrib, []
            elif tag in ("meta", "track"):
                self.builder = etree.TreeBuilder()
                self.builder.start(tag, attrib)

    def data(self, text: str) -> None:
        if self.builder is not None:
            self.builder.data(text)
        elif self.attr_name is not None:
            self.text.append(text)

    def end(self, tag: str) -> None:
        depth = self.depth
        self.depth -= 1
        if self.builder is not None:
            self.builder.end(tag)
            if depth == 2:
                self.done.append((tag, self.builder.close()))
                self.builder = None
        elif depth == 4 and self.attr_name is not None:
            record = self.records[-1]
            if record[3] is None:
                record[3] = {}
            record[3][self.attr_name] = "".join(self.text)
            self.attr_name = None
        elif depth == 2 and self.image is not None:
            self.done.append(("image", (self.image, self.records)))
            self.image, self.records = None, []

    def close(self) -> None:
        return None

    def take(self) -> list[tuple[str, Any]]:
        done, self.done = self.done, []
        return done


class CvatReader:
    """Read a CVAT XML export frame by frame.

    Parameters
    ----------
    source : file object opened in binary mode (or a path)
    name : name used in error messages
    lenient : pad short mask RLEs with background instead of raising

    Attributes
    ----------
    meta : :class:`Meta`, filled when ``<meta>`` has been read
    counts : :class:`Counts` of invalid shapes, skeletons, cuboids, ...
    """

    def __init__(
        self, source: IO[bytes] | str, *, name: str = "annotations.xml", lenient: bool = False
    ) -> None:
        self.source = source
        self.name = name
        self.lenient = lenient
        self.meta = Meta()
        self.counts = Counts()
        self.n_images = 0

    def frames(self) -> Iterator[Frame]:
        """Yield each ``<image>`` as a :class:`Frame`, then the frames of any tracks.

        Raises
        ------
        UserError
            malformed XML (with line and column), a DOCTYPE declaring entities, a bad RLE.
        """
        tracks: dict[int, list[Shape]] = defaultdict(list)
        target = _Target()
        parser = etree.XMLParser(
            target=target,
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
        )
        owned = not hasattr(self.source, "read")
        stream: IO[bytes] = open(self.source, "rb") if owned else self.source  # type: ignore[arg-type]
        seen = False
        order = 0
        try:
            chunk = _read_prolog(stream, self.name)
            if not chunk.strip():
                raise UserError("the XML file is empty", path=self.name)
            while True:
                try:
                    if chunk:
                        parser.feed(chunk)
                    else:
                        parser.close()
                except etree.XMLSyntaxError as exc:
                    raise _syntax_error(exc, self.name) from None
                for kind, item in target.take():
                    seen = True
                    if kind == "meta":
                        self.meta = _meta(item)
                    elif kind == "track":
                        order = self._track(item, tracks, order)
                    else:
                        if tracks:
                            raise UserError(
                                "tracks before images are not supported", path=self.name
                            )
                        frame = self._image(*item)
                        self.n_images += 1
                        yield frame
                if not chunk:
                    break
                chunk = stream.read(_CHUNK)
        finally:
            if owned:
                stream.close()
        if not seen:
            raise UserError("no <meta>, <image> or <track> in the XML", path=self.name)
        if tracks:
            if self.n_images:
                raise UserError(
                    "an export with both <image> and <track> is not supported", path=self.name
                )
            yield from self._video_frames(tracks)

    def _image(self, attrib: dict[str, str], records: list[_Record]) -> Frame:
        name = attrib.get("name", "")
        try:
            frame = Frame(
                id=int(attrib.get("id", self.n_images)),
                name=name,
                width=int(attrib.get("width", "0")),
                height=int(attrib.get("height", "0")),
                subset=attrib.get("subset", ""),
                task_id=attrib.get("task_id", ""),
            )
        except ValueError as exc:
            raise UserError(
                f"image {name!r}: bad id/width/height ({exc})", path=self.name
            ) from None
        if frame.width <= 0 or frame.height <= 0:
            raise UserError(f"image {name!r}: width and height must be > 0", path=self.name)
        columns = self._columns(records)
        if columns is not None:
            frame.columns = columns
            return frame
        shapes: list[Shape | None] = []
        line_idx: list[int] = []
        line_txt: list[str] = []
        for tag, a, order, custom in records:
            if tag not in SHAPE_TAGS:
                continue
            if tag in ("skeleton", "cuboid"):
                self.counts.bump(self.counts.counted, tag)
                continue
            if tag in ("polygon", "polyline", "points"):
                # coordinates of all such shapes are converted in one go below
                txt = a.get("points")
                if not txt or txt.count(",") != txt.count(";") + 1:
                    self.counts.invalid += 1
                    continue
                line_idx.append(len(shapes))
                line_txt.append(txt)
                shapes.append(
                    Shape(
                        kind=tag,
                        label=a.get("label", ""),
                        order=order,
                        occluded=a.get("occluded", "0") in _TRUE,
                        z_order=_int(a.get("z_order")),
                        group_id=_int(a.get("group_id")),
                        source=a.get("source", ""),
                        attributes=custom or {},
                    )
                )
                continue
            try:
                shapes.append(
                    _shape(
                        tag,
                        a,
                        custom or {},
                        order,
                        lenient=self.lenient,
                        where=f"image {name!r}",
                        counts=self.counts,
                    )
                )
            except InvalidShape:
                self.counts.invalid += 1
        if line_txt:
            self._points(shapes, line_idx, line_txt)
        frame.shapes = [sh for sh in shapes if sh is not None]
        return frame

    def _columns(self, records: list[_Record]) -> ShapeColumns | None:
        """The fast path: an image with only polygons, ellipses, boxes, polylines and points
        becomes :class:`ShapeColumns` (None when it holds any other shape kind)."""
        codes: list[int] = []
        kept: list[_Record] = []
        for record in records:
            code = _CODE.get(record[0])
            if code is None:
                if record[0] in SHAPE_TAGS:
                    return None  # mask, tag, skeleton, cuboid: the general path
                continue
            codes.append(code)
            kept.append(record)
        attrs: list[dict[str, str]] = [r[1] for r in kept]
        orders = [r[2] for r in kept]
        custom = [r[3] or {} for r in kept]
        n = len(codes)
        kind = np.array(codes, np.int8)
        valid = np.ones(n, bool)
        params = np.zeros((n, 5), np.float64)
        lengths = np.zeros(n, np.int64)
        # every number of the frame is parsed in one call: z_order and group_id of each
        # shape, the 5 parameters of each ellipse / box, then the vertices
        txt = [a.get("z_order") or "0" for a in attrs]
        txt += [a.get("group_id") or "0" for a in attrs]
        area_rows = [k for k in range(n) if codes[k] in (1, 2)]
        for k in area_rows:
            a = attrs[k]
            txt += [a.get(key) or "nan" for key in _PARAM_KEYS[codes[k] - 1]]
            txt.append(a.get("rotation") or "0")
        for k in range(n):
            if codes[k] not in (1, 2):
                t = attrs[k].get("points")
                if not t or t.count(",") != t.count(";") + 1:
                    valid[k] = False
                else:
                    txt.append(t)
                    lengths[k] = t.count(";") + 1
        nums = _floats_csv(",".join(txt).replace(";", ",")) if txt else np.zeros(0)
        ints = np.nan_to_num(nums[: 2 * n], nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
        z_order, group_id = ints[:n], ints[n:]
        vals = nums[2 * n : 2 * n + 5 * len(area_rows)].reshape(-1, 5)
        points = nums[2 * n + 5 * len(area_rows) :].reshape(-1, 2)
        if area_rows:
            ok = np.isfinite(vals).all(axis=1)
            ok &= (kind[area_rows] != 1) | ((vals[:, 2] > 0) & (vals[:, 3] > 0))
            params[area_rows] = vals
            valid[area_rows] = ok
        if len(points):
            has = lengths > 0
            starts = (np.cumsum(lengths) - lengths)[has]
            valid[has] &= np.logical_and.reduceat(np.isfinite(points).all(axis=1), starts)
        valid &= (kind != 0) | (lengths >= 3)  # a polygon needs 3 vertices
        bad = int(n - valid.sum())
        if bad:
            self.counts.invalid += bad
            points = points[np.repeat(valid, lengths)]
            keep = np.flatnonzero(valid).tolist()
            kind, params, lengths = kind[valid], params[valid], lengths[valid]
            z_order, group_id = z_order[valid], group_id[valid]
            orders = [orders[k] for k in keep]
            attrs = [attrs[k] for k in keep]
            custom = [custom[k] for k in keep]
        offsets = np.zeros(len(kind) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return ShapeColumns(
            kind=kind,
            label=[a.get("label", "") for a in attrs],
            order=np.array(orders, np.int64),
            z_order=z_order,
            group_id=group_id,
            occluded=np.array([a.get("occluded", "0") in _TRUE for a in attrs], bool),
            source=[a.get("source", "") for a in attrs],
            attributes=custom,
            params=params,
            offsets=offsets,
            points=points,
        )

    def _points(self, shapes: list[Shape | None], idx: list[int], txt: list[str]) -> None:
        """Fill ``points`` of the listed shapes, parsing all coordinate strings at once."""
        n_pts = np.fromiter((t.count(";") + 1 for t in txt), np.int64, len(txt))
        try:
            flat = np.array(";".join(txt).replace(";", ",").split(","), dtype=np.float64)
        except ValueError:  # some string is unreadable: find which, one by one
            for i, t in zip(idx, txt, strict=True):
                try:
                    shapes[i].points = _floats(t, "points").reshape(-1, 2)  # type: ignore[union-attr]
                except InvalidShape:
                    shapes[i] = None
                    self.counts.invalid += 1
            self._check_points(shapes, idx)
            return
        xy = flat.reshape(-1, 2)
        ends = np.cumsum(n_pts)
        starts = ends - n_pts
        finite = np.logical_and.reduceat(np.isfinite(xy).all(axis=1), starts)
        for i, s0, s1, ok in zip(idx, starts.tolist(), ends.tolist(), finite.tolist(), strict=True):
            if ok:
                shapes[i].points = xy[s0:s1]  # type: ignore[union-attr]
            else:
                shapes[i] = None
                self.counts.invalid += 1
        self._check_points(shapes, idx)

    def _check_points(self, shapes: list[Shape | None], idx: list[int]) -> None:
        for i in idx:
            sh = shapes[i]
            if sh is not None and sh.kind == "polygon" and len(sh.points) < 3:
                shapes[i] = None
                self.counts.invalid += 1

    def _track(self, el: etree._Element, tracks: dict[int, list[Shape]], order: int) -> int:
        track_id = _int(el.get("id"), -1)
        for child in el:
            if child.tag not in SHAPE_TAGS:
                continue
            if child.tag in ("skeleton", "cuboid"):
                if child.get("outside", "0") != "1":
                    self.counts.bump(self.counts.counted, child.tag)
                continue
            if child.get("outside", "0") == "1":
                continue
            frame_no = _int(child.get("frame"), -1)
            order += 1
            try:
                shape = _shape(
                    child.tag,
                    child.attrib,
                    _attributes(child),
                    order,
                    lenient=self.lenient,
                    where=f"track {track_id} frame {frame_no}",
                    counts=self.counts,
                )
            except InvalidShape:
                self.counts.invalid += 1
                continue
            shape.label = el.get("label", "")
            shape.track_id = track_id
            shape.group_id = shape.group_id or _int(el.get("group_id"))
            shape.source = shape.source or el.get("source", "")
            tracks[frame_no].append(shape)
        return order

    def _video_frames(self, tracks: dict[int, list[Shape]]) -> Iterator[Frame]:
        meta = self.meta
        if meta.original_size is None:
            raise UserError("video export without <original_size>", path=self.name)
        width, height = meta.original_size
        step = meta.frame_step
        if meta.stop_frame is not None:
            numbers = list(range(meta.start_frame, meta.stop_frame + 1, step))
        else:
            numbers = [meta.start_frame + i * step for i in range(max(meta.size, 1))]
        extra = sorted(set(tracks) - set(numbers))
        for number in sorted(numbers + extra):
            shapes = sorted(tracks.get(number, []), key=lambda s: s.order)
            yield Frame(
                id=number, name=f"frame_{number:06d}", width=width, height=height, shapes=shapes
            )
