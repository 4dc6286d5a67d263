"""Streaming, hardened reader of "CVAT for images 1.1" and "CVAT for video 1.1" XML.

The file is fed in 1 MiB pieces to an :class:`lxml.etree.XMLParser` with a parser target
(libxml2's SAX events, no tree): each ``<image>``'s shapes arrive as attribute dicts and
are turned into a :class:`Frame` when the image ends, so memory does not grow with the
number of images, and no element object is built per shape. ``<meta>`` and each
``<track>`` are small and are built as elements. Tracks (video exports) are gathered per
frame and yielded after the document.

An image's shapes take one of two representations: columns (:class:`ShapeColumns`, the
fast path of :mod:`._columns`) when it holds only polygons, ellipses, boxes, polylines
and points, else one :class:`Shape` per annotation (:mod:`._shapes`). The XML plumbing
(prolog check, parser target) is in :mod:`._xml`.

Security: entities are never resolved (``resolve_entities=False``), no DTD is loaded,
nothing is fetched from the network (``no_network=True``), ``huge_tree=False`` keeps
libxml2's size limits, and a DOCTYPE that declares any entity is refused from the
document's prolog, before the parser sees a byte of it.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import IO

from lxml import etree

from dlpipe.annotations.cvat._columns import shape_columns
from dlpipe.annotations.cvat._model import Counts, Frame, Meta, Shape, ShapeColumns
from dlpipe.annotations.cvat._shapes import (
    SHAPE_TAGS,
    InvalidShape,
    build_shape,
    decode_rle,
    image_shapes,
    parse_int,
)
from dlpipe.annotations.cvat._xml import CHUNK, Record, Target, read_prolog, syntax_error
from dlpipe.errors import UserError
from dlpipe.stores.guards import check_allocation

BYTES_PER_PIXEL = 8
"""Bytes a converted frame holds per pixel: uint32 instances, uint8 semantic, RGB image."""

__all__ = ["Counts", "CvatReader", "InvalidShape", "decode_rle"]


def _attributes(el: etree._Element) -> dict[str, str]:
    return {a.get("name", ""): (a.text or "") for a in el.iterfind("attribute")}


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
        meta.size = parse_int(_text(task, "size"), 0)
        meta.start_frame = parse_int(_text(task, "start_frame"), 0)
        stop = _text(task, "stop_frame")
        meta.stop_frame = parse_int(stop) if stop else None
        ff = _text(task, "frame_filter")
        if ff.startswith("step="):
            meta.frame_step = max(1, parse_int(ff[5:], 1))
        osz = task.find("original_size")
        if osz is not None:
            meta.original_size = (parse_int(_text(osz, "width")), parse_int(_text(osz, "height")))
    meta.source = _text(el, "source")
    return meta


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
        target = Target()
        parser = etree.XMLParser(
            target=target,
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
        )
        owned = not hasattr(self.source, "read")
        try:
            stream: IO[bytes] = open(self.source, "rb") if owned else self.source  # type: ignore[arg-type]
        except IsADirectoryError:
            raise UserError("a folder, not a CVAT annotations XML", path=self.source) from None
        except OSError as exc:
            raise UserError(
                f"cannot read the annotations ({exc.strerror})", path=self.source
            ) from None
        seen = False
        order = 0
        try:
            chunk = read_prolog(stream, self.name)
            if not chunk.strip():
                raise UserError("the XML file is empty", path=self.name)
            while True:
                try:
                    if chunk:
                        parser.feed(chunk)
                    else:
                        parser.close()
                except etree.XMLSyntaxError as exc:
                    raise syntax_error(exc, self.name) from None
                for kind, item in target.take():
                    seen = True
                    if kind == "meta":
                        self.meta = _meta(item)
                    elif kind == "track":
                        with self._named():
                            order = self._track(item, tracks, order)
                    else:
                        if tracks:
                            raise UserError(
                                "tracks before images are not supported", path=self.name
                            )
                        with self._named():
                            frame = self._image(*item)
                        self.n_images += 1
                        yield frame
                if not chunk:
                    break
                chunk = stream.read(CHUNK)
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

    def _image(self, attrib: dict[str, str], records: list[Record]) -> Frame:
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
        self._check_size(frame.width, frame.height, f"image {name!r} width/height")
        self._where = f"image {name!r}"
        columns = self._columns(records)
        if columns is not None:
            frame.columns = columns
            return frame
        frame.shapes = image_shapes(
            records, self.counts, lenient=self.lenient, where=f"image {name!r}"
        )
        return frame

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """Errors about a shape name this file too (one line: file, image, shape)."""
        try:
            yield
        except UserError as exc:
            if exc.path is None:
                raise UserError(str(exc), path=self.name) from None
            raise

    def _check_size(self, width: int, height: int, field: str) -> None:
        """Refuse a frame size whose masks would not fit in memory (the one size guard)."""
        check_allocation(
            width * height * BYTES_PER_PIXEL,
            f"{width} x {height} pixel masks",
            path=self.name,
            field=field,
        )

    def _columns(self, records: list[Record]) -> ShapeColumns | None:
        """The fast path (:func:`._columns.shape_columns`), None for the general one."""
        where = getattr(self, "_where", "image")
        return shape_columns(records, self.counts, lenient=self.lenient, where=where)

    def _track(self, el: etree._Element, tracks: dict[int, list[Shape]], order: int) -> int:
        track_id = parse_int(el.get("id"), -1)
        for child in el:
            if child.tag not in SHAPE_TAGS:
                continue
            if child.tag in ("skeleton", "cuboid"):
                if child.get("outside", "0") != "1":
                    self.counts.bump(self.counts.counted, child.tag)
                continue
            if child.get("outside", "0") == "1":
                continue
            frame_no = parse_int(child.get("frame"), -1)
            order += 1
            shape = build_shape(
                child.tag,
                child.attrib,
                _attributes(child),
                order,
                lenient=self.lenient,
                where=f"track {track_id} frame {frame_no}",
                counts=self.counts,
            )
            if shape is None:
                continue
            shape.label = el.get("label", "")
            shape.track_id = track_id
            shape.group_id = shape.group_id or parse_int(el.get("group_id"))
            shape.source = shape.source or el.get("source", "")
            tracks[frame_no].append(shape)
        return order

    def _video_frames(self, tracks: dict[int, list[Shape]]) -> Iterator[Frame]:
        meta = self.meta
        if meta.original_size is None:
            raise UserError("video export without <original_size>", path=self.name)
        width, height = meta.original_size
        if width <= 0 or height <= 0:
            raise UserError("video <original_size> width and height must be > 0", path=self.name)
        self._check_size(width, height, "<original_size> width/height")
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
