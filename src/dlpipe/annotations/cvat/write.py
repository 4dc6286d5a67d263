"""Write shapes as "CVAT for images 1.1" XML (round trips, benchmarks, COCO conversion)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lxml import etree


def _f(v: float) -> str:
    return repr(float(v))


def write_cvat_xml(
    path: str | Path,
    labels: Sequence[str],
    images: Iterable[tuple[str, int, int, Sequence[dict[str, Any]]]],
) -> Path:
    """Write a CVAT for images 1.1 task export.

    Parameters
    ----------
    labels : label names, in order
    images : (name, width, height, shapes) per image; each shape a dict with ``type``
        (polygon, ellipse, box, mask, polyline, points, tag), ``label`` and the CVAT
        attributes: ``points`` as [(x, y), ...]; ``cx, cy, rx, ry``; ``xtl, ytl, xbr,
        ybr``; ``rotation``; ``rle, left, top, width, height``; ``z_order``, ...; and
        optional ``attributes`` {name: value}.

    Coordinates are written with full float precision (repr) so round trips are exact.
    """
    path = Path(path)
    with etree.xmlfile(str(path), encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element("annotations"):
            xf.write(etree.fromstring("<version>1.1</version>"))
            meta = etree.Element("meta")
            task = etree.SubElement(meta, "task")
            etree.SubElement(task, "mode").text = "annotation"
            labs = etree.SubElement(task, "labels")
            for name in labels:
                lab = etree.SubElement(labs, "label")
                etree.SubElement(lab, "name").text = name
            xf.write(meta)
            for image_id, (name, width, height, shapes) in enumerate(images):
                img = etree.Element(
                    "image", id=str(image_id), name=name, width=str(width), height=str(height)
                )
                for shape in shapes:
                    attrib = {"label": shape["label"]}
                    for key, value in shape.items():
                        if key in ("type", "label", "attributes"):
                            continue
                        if key == "points":
                            value = ";".join(f"{_f(x)},{_f(y)}" for x, y in value)
                        elif isinstance(value, float):
                            value = _f(value)
                        attrib[key] = str(value)
                    el = etree.SubElement(img, shape["type"], attrib)
                    for an, av in (shape.get("attributes") or {}).items():
                        etree.SubElement(el, "attribute", name=an).text = str(av)
                xf.write(img)
    return path
