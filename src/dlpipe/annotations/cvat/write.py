"""Write shapes as "CVAT for images 1.1" XML: the one CVAT writer of dlpipe.

Used by round trips, benchmarks, the COCO tests and ``dlpipe synth``'s export, and meant
for every future export (predictions back to CVAT): polygons, ellipses, boxes, masks (as
CVAT's RLE, from a bool array or given), polylines, points and tags, with labels by name
and, where wanted, the full ``<meta>`` of a task.

The document is streamed image by image (``lxml.etree.xmlfile``), so memory does not grow
with the number of images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree

__all__ = ["encode_rle", "write_cvat_xml"]

#: One ``<image>``: name, width, height, shapes.
ImageShapes = tuple[str, int, int, Sequence[Mapping[str, Any]]]
#: A label: its name, or the children of its ``<label>`` in order (``name``, ``color``, ...).
LabelSpec = str | Mapping[str, Any]

_INDENT = "  "


def _repr(v: float) -> str:
    """Full float precision, so that round trips are exact."""
    return repr(float(v))


def encode_rle(mask: np.ndarray) -> tuple[str, int, int, int, int]:
    """A 2D bool mask as CVAT's mask RLE over the mask's bounding box.

    The inverse of :func:`dlpipe.annotations.cvat.decode_rle`: runs alternate background,
    foreground, ... starting with background, row-major over the box.

    Returns
    -------
    rle, left, top, width, height : the ``<mask>`` attributes (an empty mask gives a 1x1
        box of background at (0, 0))
    """
    mask = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return "1", 0, 0, 1, 1
    top, left = int(rows[0]), int(cols[0])
    box = mask[top : int(rows[-1]) + 1, left : int(cols[-1]) + 1].ravel()
    edges = np.flatnonzero(np.diff(box.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [box.size]])
    runs = np.diff(bounds).tolist()
    if box[0]:  # runs start with background
        runs = [0, *runs]
    height, width = int(rows[-1]) + 1 - top, int(cols[-1]) + 1 - left
    return ", ".join(str(r) for r in runs), left, top, width, height


def _fill(parent: etree._Element, children: Mapping[str, Any]) -> None:
    """Children of ``parent`` from a mapping: a string is the child's text, a mapping its
    children, a list of mappings one child per item."""
    for tag, value in children.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            el = etree.SubElement(parent, tag)
            if isinstance(item, Mapping):
                _fill(el, item)
            elif item is not None:
                el.text = str(item)


def _meta(
    labels: Sequence[LabelSpec], task: Mapping[str, Any] | None, extra: Mapping[str, Any]
) -> etree._Element:
    label_list = [{"name": lab} if isinstance(lab, str) else lab for lab in labels]
    fields = dict(task) if task is not None else {"mode": "annotation"}
    fields["labels"] = {"label": label_list}  # in its place if given, else last
    meta = etree.Element("meta")
    _fill(meta, {"task": fields, **extra})
    return meta


def _shape(
    parent: etree._Element, shape: Mapping[str, Any], number: Callable[[float], str]
) -> None:
    attrib = {"label": str(shape["label"])}
    for key, value in shape.items():
        if key in ("type", "label", "attributes"):
            continue
        if key == "mask" and not isinstance(value, str):
            rle, left, top, width, height = encode_rle(value)
            attrib |= {"rle": rle, "left": str(left), "top": str(top)}
            attrib |= {"width": str(width), "height": str(height)}
            continue
        if key == "points" and not isinstance(value, str):
            value = ";".join(f"{number(x)},{number(y)}" for x, y in value)
        elif isinstance(value, float):
            value = number(value)
        attrib[key] = str(value)
    el = etree.SubElement(parent, shape["type"], attrib)
    for name, value in (shape.get("attributes") or {}).items():
        etree.SubElement(el, "attribute", name=name).text = str(value)


def write_cvat_xml(
    path: str | Path,
    labels: Sequence[LabelSpec],
    images: Iterable[ImageShapes],
    *,
    task: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    number: Callable[[float], str] = _repr,
    pretty: bool = False,
) -> Path:
    """Write a CVAT for images 1.1 task export.

    Parameters
    ----------
    path : the XML file to write
    labels : label names in order, or per label the children of its ``<label>`` in order
        (``{"name": "pore", "color": "#fa3253", "type": "any", "attributes": ""}``)
    images : (name, width, height, shapes) per image, consumed lazily; images get ids
        0, 1, ... Each shape is a dict with ``type`` (polygon, ellipse, box, mask,
        polyline, points, tag), ``label`` and the CVAT attributes in the order to write
        them: ``points`` as [(x, y), ...] (or a ready string); ``cx, cy, rx, ry``;
        ``xtl, ytl, xbr, ybr``; ``rotation``; for a mask either ``rle, left, top, width,
        height`` or ``mask``, a 2D bool array in image pixels (written as the RLE of its
        bounding box); ``source``, ``occluded``, ``z_order``, ...; and optional
        ``attributes`` {name: value}, written as ``<attribute>`` children.
    task : the children of ``<task>`` in order (a string is an element's text, a mapping
        its children, a list of mappings repeated elements); the labels go at its key
        ``labels`` if present, else last. Default: ``{"mode": "annotation"}``.
    meta : further children of ``<meta>`` after ``<task>`` (e.g. ``{"dumped": ...}``)
    number : how a float attribute or coordinate is written; the default (``repr``) keeps
        full precision, so round trips are exact
    pretty : indent the document by two spaces per level (as CVAT's own exports)

    Returns
    -------
    ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    head = etree.Element("version")
    head.text = "1.1"
    with open(path, "wb") as f:
        with etree.xmlfile(f, encoding="UTF-8") as xf:
            xf.write_declaration()
            with xf.element("annotations"):
                _put(xf, head, pretty)
                _put(xf, _meta(labels, task, meta or {}), pretty)
                for image_id, (name, width, height, shapes) in enumerate(images):
                    img = etree.Element(
                        "image", id=str(image_id), name=name, width=str(width), height=str(height)
                    )
                    for shape in shapes:
                        _shape(img, shape, number)
                    _put(xf, img, pretty)
                if pretty:
                    xf.write("\n")
        if pretty:
            f.write(b"\n")
    return path


def _put(xf: Any, el: etree._Element, pretty: bool) -> None:
    """Stream one child of ``<annotations>``, indented when ``pretty``."""
    if pretty:
        xf.write("\n" + _INDENT)
        etree.indent(el, space=_INDENT, level=1)
    xf.write(el)
