"""The objects table (Parquet / CSV) and the columnar fast path of the reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlpipe.annotations import (
    Counts,
    CvatReader,
    DrawOptions,
    convert,
    rasterise_frame,
    read_objects,
    table_path,
)

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><labels><label><name>void</name></label><label><name>loop</name></label>
</labels></task></meta>
<image id="2" name="c.png" width="20" height="10">
  <box label="void" occluded="1" source="manual" xtl="0" ytl="0" xbr="4" ybr="2" z_order="0">
    <attribute name="size">big</attribute></box>
</image>
<image id="0" name="a.png" width="20" height="10">
  <polygon label="loop" source="auto" occluded="0" points="1,1;5,1;5,4" z_order="1"/>
  <tag label="void" source="manual"/>
</image>
<image id="1" name="b.png" width="20" height="10">
  <ellipse label="void" occluded="0" cx="10" cy="5" rx="2" ry="1" z_order="0" group_id="3"/>
</image>
</annotations>
"""


def test_parquet_and_csv_tables_agree(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(XML)
    convert(xml, tmp_path / "p.zarr", params={"read_images": False})
    convert(xml, tmp_path / "c.zarr", params={"read_images": False, "table": "csv"})
    assert table_path(tmp_path / "p.zarr").name == "objects.parquet"
    assert table_path(tmp_path / "c.zarr").name == "objects.csv"
    rows = read_objects(tmp_path / "p.zarr")
    assert rows == read_objects(tmp_path / "c.zarr")
    # images sorted by id: a (id 0) -> 0, b -> 1, c -> 2; the table follows
    assert [(r["image"], r["image_name"], r["kind"]) for r in rows] == [
        (2, "c.png", "box"),
        (0, "a.png", "tag"),  # an image's tags come first, then its painted objects
        (0, "a.png", "polygon"),
        (1, "b.png", "ellipse"),
    ]
    box, tag, poly, ell = rows
    assert box["attributes"] == {"size": "big"} and box["occluded"] == 1
    assert (box["x1"], box["y1"], box["x2"], box["y2"], box["area"]) == (0, 0, 4, 2, 8)
    # triangle (1,1) (5,1) (5,4): centres x=j+.5, y=i+.5 strictly left of the hypotenuse
    # x = 1 + 4/3 (y - 1): row 1 (y 1.5) cols 2..4, row 2 (y 2.5) cols 3..4, row 3 col 4
    assert poly["area"] == 6 and (poly["x1"], poly["x2"], poly["y1"], poly["y2"]) == (2, 5, 1, 4)
    assert (tag["instance_id"], tag["area"], tag["label"]) == (0, 0, "void")
    assert ell["group_id"] == 3 and ell["area"] == 8  # rows 4, 5: cols 9, 10 / 8..11
    t = pq.read_table(tmp_path / "p.zarr/objects.parquet")
    assert t.schema.field("attributes").type == pa.map_(pa.string(), pa.string())
    assert t.schema.field("area").type == pa.int64() and t.num_rows == 4


def random_xml(path: Path, seed: int, n_images: int = 6) -> Path:
    rng = np.random.default_rng(seed)
    out = ['<?xml version="1.0"?>\n<annotations><meta><task><labels>']
    out += [f"<label><name>{n}</name></label>" for n in ("a", "b", "c")]
    out.append("</labels></task></meta>")
    for i in range(n_images):
        out.append(f'<image id="{i}" name="{i}.png" width="40" height="30">')
        for _ in range(25):
            lab = "abc"[rng.integers(3)]
            common = f'label="{lab}" occluded="{rng.integers(2)}" z_order="{rng.integers(-2, 3)}"'
            if rng.random() < 0.3:
                common += f' group_id="{rng.integers(1, 4)}"'
            kind = rng.choice(["polygon", "ellipse", "box", "polyline", "points", "bad"])
            cx, cy = rng.uniform(-5, 45), rng.uniform(-5, 35)
            if kind in ("polygon", "polyline", "points"):
                n = int(rng.integers(2, 9))
                pts = np.c_[cx + rng.uniform(-9, 9, n), cy + rng.uniform(-9, 9, n)]
                txt = ";".join(f"{x:.3f},{y:.3f}" for x, y in pts)
                out.append(f'<{kind} {common} points="{txt}"/>')
            elif kind == "ellipse":
                out.append(
                    f'<ellipse {common} cx="{cx:.2f}" cy="{cy:.2f}" rx="{rng.uniform(0.3, 9):.2f}" '
                    f'ry="{rng.uniform(0.3, 9):.2f}" rotation="{rng.uniform(0, 360):.1f}"/>'
                )
            elif kind == "box":
                rot = f' rotation="{rng.uniform(0, 360):.1f}"' if rng.random() < 0.5 else ""
                out.append(
                    f'<box {common} xtl="{cx:.2f}" ytl="{cy:.2f}" '
                    f'xbr="{cx + rng.uniform(0, 12):.2f}" ybr="{cy + rng.uniform(0, 12):.2f}"'
                    f'{rot}><attribute name="q">{i}</attribute></box>'
                )
            else:  # invalid shapes: skipped and counted by both paths
                out.append(
                    rng.choice(
                        [
                            f'<polygon {common} points="1,1;5,5"/>',
                            f'<polygon {common} points="1,1;nan,5;6,2"/>',
                            f'<ellipse {common} cx="3" cy="3" rx="0" ry="2"/>',
                            f'<ellipse {common} cx="3" cy="inf" rx="1" ry="2"/>',
                            f'<box {common} xtl="1" ytl="x" xbr="3" ybr="4"/>',
                            f'<polyline {common} points="1,1;2"/>',
                        ]
                    )
                )
        out.append("</image>")
    out.append("</annotations>")
    path.write_text("\n".join(out))
    return path


@pytest.mark.parametrize(
    "draw", [DrawOptions(), DrawOptions(polyline_width=2.5, points_radius=1.5)]
)
def test_columnar_fast_path_equals_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, draw: DrawOptions
) -> None:
    xml = random_xml(tmp_path / "r.xml", seed=5)
    class_of = {"a": 1, "b": 2, "c": None}  # "c" dropped by the label map

    def run() -> tuple[list, Counts]:
        reader = CvatReader(str(xml))
        out = []
        for f in reader.frames():
            out.append(
                (
                    f.columns is not None,
                    *rasterise_frame(f, class_of, 30, 40, counts=reader.counts, draw=draw),
                )
            )
        return out, reader.counts

    fast, fast_counts = run()
    monkeypatch.setattr(CvatReader, "_columns", lambda self, el: None)
    slow, slow_counts = run()
    assert all(r[0] for r in fast) and not any(r[0] for r in slow)
    assert fast_counts == slow_counts and fast_counts.invalid > 0 and fast_counts.clipped > 0
    for (_, s1, i1, o1), (_, s2, i2, o2) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(i1, i2)
        assert o1 == o2
    assert sum(len(r[3]) for r in fast) > 30
