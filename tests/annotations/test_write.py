"""The one CVAT writer: mask RLE from arrays, labels with colours, meta, pretty layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from dlpipe.annotations import CvatReader, decode_rle, write_cvat_xml
from dlpipe.annotations.cvat.write import encode_rle


@pytest.mark.parametrize("seed", range(5))
def test_encode_rle_inverts_decode_rle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((20, 30), bool)
    mask[3:15, 4:27] = rng.random((12, 23)) > 0.5
    mask[3, 4] = seed % 2 == 0  # a box starting with foreground, or with background
    rle, left, top, width, height = encode_rle(mask)
    box, padded = decode_rle(rle, width, height)
    assert not padded
    back = np.zeros_like(mask)
    back[top : top + height, left : left + width] = box
    np.testing.assert_array_equal(back, mask)


def test_empty_mask_encodes_as_one_background_pixel() -> None:
    assert encode_rle(np.zeros((4, 5), bool)) == ("1", 0, 0, 1, 1)


def test_mask_arrays_read_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((16, 24)) > 0.7, np.eye(16, 24, dtype=bool)]
    shapes = [
        {"type": "mask", "label": lab, "source": "auto", "mask": m, "z_order": k}
        for k, (lab, m) in enumerate(zip(["pore", "fibre"], masks, strict=True))
    ]
    shapes.append({"type": "box", "label": "fibre", "xtl": 1.0, "ytl": 2.0, "xbr": 5.5, "ybr": 6})
    xml = write_cvat_xml(
        tmp_path / "p.xml",
        [{"name": "fibre", "color": "#3d9df3"}, {"name": "pore", "color": "#fa3253"}],
        [("slice_z0003.png", 24, 16, shapes)],
    )
    reader = CvatReader(str(xml))
    (frame,) = list(reader.frames())
    assert reader.meta.labels == ["fibre", "pore"]
    got = frame.shapes
    assert [s.kind for s in got] == ["mask", "mask", "box"]
    for shape, m in zip(got[:2], masks, strict=True):
        back = np.zeros((16, 24), bool)
        h, w = shape.mask.shape
        back[shape.top : shape.top + h, shape.left : shape.left + w] = shape.mask
        np.testing.assert_array_equal(back, m)
    assert got[0].source == "auto" and got[1].z_order == 1
    assert got[2].params == (1.0, 2.0, 5.5, 6.0)


def test_task_meta_and_pretty_layout(tmp_path: Path) -> None:
    images = [
        ("a.png", 4, 3, [{"type": "polygon", "label": "x", "points": [(0, 0), (2, 0), (2, 2)]}])
    ]
    task = {"id": "7", "labels": None, "owner": {"username": "me"}}
    flat = write_cvat_xml(tmp_path / "flat.xml", ["x"], images, task=task, meta={"dumped": "now"})
    nice = write_cvat_xml(
        tmp_path / "nice.xml", ["x"], images, task=task, meta={"dumped": "now"}, pretty=True
    )
    text = nice.read_text()
    assert "\n  <meta>\n    <task>\n      <id>7</id>\n      <labels>" in text
    assert text.endswith("  </image>\n</annotations>\n")
    trees = [etree.parse(str(p), etree.XMLParser(remove_blank_text=True)) for p in (flat, nice)]
    assert etree.tostring(trees[0]) == etree.tostring(trees[1])
    meta = trees[0].find("meta")
    assert [c.tag for c in meta.find("task")] == ["id", "labels", "owner"]
    assert meta.findtext("dumped") == "now"
    assert trees[0].find("image/polygon").get("points") == "0.0,0.0;2.0,0.0;2.0,2.0"
