"""The reader in a child process (dlpipe cvat on large exports) gives what the reader gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dlpipe.annotations import CvatReader, convert
from dlpipe.annotations.cvat import _background
from dlpipe.annotations.cvat._background import BackgroundReader
from dlpipe.errors import UserError

FILES = [
    "cvat_docs/cvat_images_1.1_doc_example.xml",  # mask RLE, tags
    "datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml",
    "datumaro/tests/assets/cvat_dataset/for_video/annotations.xml",  # tracks
    "dagshub/tests/cvat/res/pose_grouping.xml",  # skeletons (counted)
]


def _same_frames(a: list, b: list) -> None:
    assert [(f.id, f.name, f.width, f.height, f.n_shapes) for f in a] == [
        (f.id, f.name, f.width, f.height, f.n_shapes) for f in b
    ]
    for fa, fb in zip(a, b, strict=True):
        for sa, sb in zip(fa.shapes, fb.shapes, strict=True):
            assert (sa.kind, sa.label, sa.order, sa.z_order, sa.params) == (
                sb.kind,
                sb.label,
                sb.order,
                sb.z_order,
                sb.params,
            )
            for x, y in ((sa.points, sb.points), (sa.mask, sb.mask)):
                assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("name", FILES)
def test_child_process_reads_what_the_reader_reads(cvat_data: Path, name: str) -> None:
    path = cvat_data / name
    plain = CvatReader(str(path))
    want = list(plain.frames())
    child = BackgroundReader(path, name=name)
    got = list(child.frames())
    _same_frames(got, want)
    assert child.meta == plain.meta and child.n_images == plain.n_images
    assert child.counts == plain.counts


def test_parser_counts_join_the_painters(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotations><meta><task><labels><label><name>a</name></label></labels></task></meta>"
        '<image id="0" name="i.png" width="8" height="6">'
        '<polygon label="a" points="1,1;2,2"/><skeleton label="a"/>'
        '<box label="a" xtl="0" ytl="0" xbr="20" ybr="2"/></image></annotations>'
    )
    reader = BackgroundReader(xml, name="a.xml")
    reader.counts.clipped = 5  # the painter's tally, kept
    frames = list(reader.frames())
    assert [f.n_shapes for f in frames] == [1]
    assert (reader.counts.invalid, reader.counts.counted, reader.counts.clipped) == (
        1,
        {"skeleton": 1},
        5,
    )


def test_errors_of_the_child_are_raised_here(tmp_path: Path, run_cli) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<annotations><image id="0" name="i.png" width="8" height="6">\n<box')
    with pytest.raises(UserError, match="malformed XML at line 2"):
        list(BackgroundReader(bad, name=str(bad)).frames())


def test_convert_through_the_child_is_identical(
    cvat_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    xml = cvat_data / "datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml"
    params = {"read_images": False, "size_mismatch": "pad_crop"}
    a = convert(xml, tmp_path / "a.zarr", params=params)
    monkeypatch.setattr(_background, "MIN_BYTES", 0)
    b = convert(xml, tmp_path / "b.zarr", params=params)
    assert a["counts"] == b["counts"] and a["objects_per_label"] == b["objects_per_label"]
    ga, gb = (zarr.open_group(str(tmp_path / n), mode="r") for n in ("a.zarr", "b.zarr"))
    for key in ("semantic", "instances"):
        assert np.array_equal(ga[key][:], gb[key][:])
    assert (tmp_path / "a.zarr" / "objects.parquet").read_bytes() == (
        tmp_path / "b.zarr" / "objects.parquet"
    ).read_bytes()
    # a bad file through the CLI: one line, exit 2, nothing written
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotations><image")
    code, err = run_cli("cvat", bad, "--no-images", "--out", tmp_path / "c.zarr")
    assert code == 2 and "malformed XML" in err
    assert not (tmp_path / "c.zarr").exists()
